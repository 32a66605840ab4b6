/**
 * Sync and verify, for one LoRA or all. Each returns the server's result (undefined when the user
 * cancelled a picker or a confirmation, or the workspace is untrusted) and never waits on the
 * closing notification, so tests can await the command itself.
 */
import * as path from 'node:path';
import { TabInputCustom, Uri, window, workspace } from 'vscode';
import {
  PlanRequest,
  type SyncParams,
  SyncRequest,
  type SyncSummary,
  VerifyRequest,
  type VerifyResult,
} from '../../server/src/protocol/messages';
import type { PlannedCopy } from '../../server/src/protocol/reports';
import type { CopyMapStore } from './copyMapStore';
import { type LoraArg, type LoraTarget, pickLora, targetFromArg } from './pickers';
import { errorText, withServerProgress } from './progress';
import type { ServerClient } from './serverClient';
import { backupsOff } from './settings';

/** Extra options for automation: `confirmed` skips the force-sync dialog (tests cannot click it). */
export interface ForceOptions {
  confirmed?: boolean;
}

/** What `loraSync.syncCopy` takes: the copy's URI (or its string, or `{ uri }`); none: the file of the active LoRA inspector. */
export type CopyArg = Uri | string | { uri: Uri | string } | undefined;

function copyUri(arg: CopyArg): Uri | undefined {
  if (arg instanceof Uri) return arg;
  if (typeof arg === 'string') return Uri.parse(arg);
  if (arg && typeof arg === 'object' && 'uri' in arg) return arg.uri instanceof Uri ? arg.uri : Uri.parse(arg.uri);
  const input = window.tabGroups.activeTabGroup.activeTab?.input;
  return input instanceof TabInputCustom && input.viewType === 'loraSync.inspector' ? input.uri : undefined;
}

export class SyncCommands {
  constructor(
    private readonly server: ServerClient,
    private readonly store: CopyMapStore,
  ) {}

  /** Writes are never sent from an untrusted workspace (the server refuses them too). */
  private trusted(): boolean {
    if (workspace.isTrusted) return true;
    void window.showWarningMessage('LoRA Sync does not write in an untrusted workspace. Trust the workspace to sync.');
    return false;
  }

  async syncLora(arg: LoraArg): Promise<SyncSummary | undefined> {
    if (!this.trusted()) return undefined;
    const target = targetFromArg(arg) ?? (await pickLora(this.store, 'Sync LoRA'));
    return target ? this.sync({ lora: target.lora, folder: target.folder }, `Syncing ${target.lora}`) : undefined;
  }

  async syncAll(): Promise<SyncSummary | undefined> {
    if (!this.trusted()) return undefined;
    return this.sync({ all: true }, 'Syncing all LoRAs');
  }

  async forceSyncLora(arg: LoraArg, options?: ForceOptions): Promise<SyncSummary | undefined> {
    if (!this.trusted()) return undefined;
    const target = targetFromArg(arg) ?? (await pickLora(this.store, 'Force sync LoRA'));
    if (!target || !(await this.confirmForce(target, options?.confirmed === true))) return undefined;
    return this.sync({ lora: target.lora, folder: target.folder, force: true }, `Force-syncing ${target.lora}`);
  }

  /**
   * One copy (the inspector's "Sync this copy"): planned alone first; a copy that only a forced sync
   * writes (diverged, mismatched) is overwritten after a modal confirmation, with a backup.
   * Undefined when nothing was written: not a copy, nothing to do, refused (the reason is shown).
   */
  async syncCopy(arg: CopyArg, options?: ForceOptions): Promise<SyncSummary | undefined> {
    if (!this.trusted()) return undefined;
    const uri = copyUri(arg);
    if (!uri) {
      void window.showInformationMessage('LoRA Sync: open a copy in the LoRA inspector to sync it.');
      return undefined;
    }
    const target = await this.copyTarget(uri);
    if (!target) return undefined;
    let planned: PlannedCopy | undefined;
    let source: string | undefined;
    try {
      const plan = await this.server.request(PlanRequest, {
        lora: target.lora,
        folder: target.folder,
        copies: [target.path],
        force: true,
      });
      const lora = plan.folders.flatMap((f) => f.plan)[0];
      planned = lora?.copies[0];
      source = lora?.source;
    } catch (e) {
      void window.showErrorMessage(`LoRA Sync: could not plan the sync: ${errorText(e)}`);
      return undefined;
    }
    if (!planned || planned.action === 'skip' || planned.action === 'refuse') {
      void window.showInformationMessage(
        `LoRA Sync: ${target.path} is not written: ${planned?.why ?? 'it is not in the plan'}.`,
      );
      return undefined;
    }
    const force = planned.action === 'force';
    if (force && !options?.confirmed) {
      const backup = backupsOff(uri)
        ? 'Backups are turned off (loraSync.backups): the old file will be lost.'
        : 'The old file is kept in .lora-sync/backups/<time>/ first (unless lora-sync.json turns backups off).';
      const detail = `${target.path} is ${planned.status}: it changed on its own and will be overwritten with ${source ?? 'its source'}. Its own keys are kept.\n\n${backup}`;
      if (
        (await window.showWarningMessage(
          `Force sync ${path.basename(target.path)}?`,
          { modal: true, detail },
          'Overwrite',
        )) !== 'Overwrite'
      )
        return undefined;
    }
    return this.sync(
      { lora: target.lora, folder: target.folder, copies: [target.path], force },
      `Syncing ${path.basename(target.path)}`,
    );
  }

  /** The LoRA, folder and relative path of a copy, from the copy map (refreshed once if the file is new to it). */
  private async copyTarget(uri: Uri): Promise<{ lora: string; folder: string; path: string } | undefined> {
    const folder = workspace.getWorkspaceFolder(uri);
    const rel = folder ? path.relative(folder.uri.fsPath, uri.fsPath).split(path.sep).join('/').normalize('NFC') : '';
    const find = () =>
      this.store.result?.folders.find((f) => f.uri === folder?.uri.toString())?.files.find((f) => f.path === rel);
    let file = folder ? find() : undefined;
    if (folder && !file) {
      await this.store.refresh();
      file = find();
    }
    if (!folder || !file || file.role !== 'copy' || !file.lora_id) {
      void window.showInformationMessage(`LoRA Sync: ${folder ? rel : uri.fsPath} is not a tracked copy of a LoRA.`);
      return undefined;
    }
    return { lora: file.lora_id, folder: folder.uri.toString(), path: rel };
  }

  /** Names every copy a forced sync will overwrite (from a forced plan) and where the old files go. */
  private async confirmForce(target: LoraTarget, confirmed: boolean): Promise<boolean> {
    let forced: string[];
    try {
      const plan = await this.server.request(PlanRequest, { lora: target.lora, folder: target.folder, force: true });
      forced = plan.folders.flatMap((f) =>
        f.plan.flatMap((l) => l.copies.filter((c) => c.action === 'force').map((c) => c.path)),
      );
    } catch (e) {
      void window.showErrorMessage(`LoRA Sync: could not plan the forced sync: ${errorText(e)}`);
      return false;
    }
    if (confirmed) return true;
    if (!forced.length) {
      // Nothing diverged: an ordinary sync does the same, without the dialog.
      return true;
    }
    const shown =
      forced
        .slice(0, 15)
        .map((p) => `• ${p}`)
        .join('\n') + (forced.length > 15 ? `\n… and ${forced.length - 15} more` : '');
    const scope = target.folder ? Uri.parse(target.folder) : undefined;
    const backup = backupsOff(scope)
      ? 'Backups are turned off (loraSync.backups): the old files will be lost.'
      : 'The old files are kept in .lora-sync/backups/<time>/ first (unless lora-sync.json turns backups off).';
    const detail = `These ${forced.length} cop${forced.length === 1 ? 'y' : 'ies'} changed on their own and will be overwritten with the source:\n${shown}\n\n${backup}`;
    const choice = await window.showWarningMessage(`Force sync ${target.lora}?`, { modal: true, detail }, 'Overwrite');
    return choice === 'Overwrite';
  }

  private async sync(params: SyncParams, title: string): Promise<SyncSummary | undefined> {
    let summary: SyncSummary;
    try {
      summary = await withServerProgress(this.server, `LoRA Sync: ${title}`, (workDoneToken, token) =>
        this.server.request(SyncRequest, { ...params, workDoneToken }, token),
      );
    } catch (e) {
      void window
        .showErrorMessage(`LoRA Sync: sync failed: ${errorText(e)}`, 'Open Log')
        .then((c) => c && this.server.log.show());
      return undefined;
    }
    this.store.schedule();
    this.report(summary);
    return summary;
  }

  private report(s: SyncSummary): void {
    const line = `${s.synced} synced, ${s.failed} failed, ${s.skipped} skipped, ${s.refused} refused${s.cancelled ? ' (cancelled)' : ''}`;
    this.server.log.info(`sync: ${line}`);
    for (const f of s.folders) {
      if (!f.historyError) continue;
      this.server.log.warn(`${f.root}: ${f.historyError}`);
      void window.showWarningMessage(`LoRA Sync: the copies were synced, but ${f.historyError}`);
    }
    if (!s.failed) {
      void window.showInformationMessage(`LoRA Sync: ${line}`);
      return;
    }
    void window.showWarningMessage(`LoRA Sync: ${line}`, 'Show Failures').then((choice) => {
      if (choice !== 'Show Failures') return;
      for (const f of s.folders)
        for (const l of f.loras)
          for (const c of l.copies) {
            if (c.outcome === 'failed') this.server.log.error(`${l.name}: ${c.path}: ${c.reason}`);
          }
      this.server.log.show(true);
    });
  }

  async verify(arg: LoraArg | 'all'): Promise<VerifyResult | undefined> {
    const target = arg === 'all' ? undefined : (targetFromArg(arg) ?? (await pickLora(this.store, 'Verify LoRA')));
    if (arg !== 'all' && !target) return undefined;
    let result: VerifyResult;
    try {
      result = await withServerProgress(
        this.server,
        `LoRA Sync: verifying ${target?.lora ?? 'all LoRAs'}`,
        (workDoneToken, token) =>
          this.server.request(VerifyRequest, { lora: target?.lora, folder: target?.folder, workDoneToken }, token),
      );
    } catch (e) {
      void window.showErrorMessage(`LoRA Sync: verify failed: ${errorText(e)}`);
      return undefined;
    }
    const bad = result.folders.flatMap((f) => f.report.loras.filter((l) => !l.is_consistent));
    if (result.is_consistent) {
      void window.showInformationMessage(`LoRA Sync: ${target ? target.lora : 'every LoRA'} is consistent.`);
    } else {
      for (const l of bad)
        for (const i of l.issues)
          this.server.log.warn(`verify ${l.name}: ${i.type} ${i.file}${i.param ? ` ${i.param}` : ''}: ${i.detail}`);
      void window
        .showWarningMessage(
          `LoRA Sync: ${bad.length} LoRA${bad.length === 1 ? '' : 's'} not consistent.`,
          'Show Issues',
        )
        .then((c) => c && this.server.log.show(true));
    }
    return result;
  }
}
