/**
 * Sync and verify, for one LoRA or all. Each returns the server's result (undefined when the user
 * cancelled a picker or a confirmation, or the workspace is untrusted) and never waits on the
 * closing notification, so tests can await the command itself.
 */
import { Uri, window, workspace } from 'vscode';
import { PlanRequest, SyncParams, SyncRequest, SyncSummary, VerifyRequest, VerifyResult } from '../../server/src/lsp/protocol';
import { CopyMapStore } from './copyMapStore';
import { LoraArg, LoraTarget, pickLora, targetFromArg } from './pickers';
import { errorText, withServerProgress } from './progress';
import { ServerClient } from './serverClient';
import { backupsOff } from './settings';

/** Extra options for automation: `confirmed` skips the force-sync dialog (tests cannot click it). */
export interface ForceOptions { confirmed?: boolean }

export class SyncCommands {
  constructor(private readonly server: ServerClient, private readonly store: CopyMapStore) {}

  /** Writes are never sent from an untrusted workspace (the server has no read-only mode yet). */
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

  /** Names every copy a forced sync will overwrite (from a forced plan) and where the old files go. */
  private async confirmForce(target: LoraTarget, confirmed: boolean): Promise<boolean> {
    let forced: string[];
    try {
      const plan = await this.server.request(PlanRequest, { lora: target.lora, folder: target.folder, force: true });
      forced = plan.folders.flatMap((f) => f.plan.flatMap((l) => l.copies.filter((c) => c.action === 'force').map((c) => c.path)));
    } catch (e) {
      void window.showErrorMessage(`LoRA Sync: could not plan the forced sync: ${errorText(e)}`);
      return false;
    }
    if (confirmed) return true;
    if (!forced.length) {
      // Nothing diverged: an ordinary sync does the same, without the dialog.
      return true;
    }
    const shown = forced.slice(0, 15).map((p) => `• ${p}`).join('\n') + (forced.length > 15 ? `\n… and ${forced.length - 15} more` : '');
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
        this.server.request(SyncRequest, { ...params, workDoneToken }, token));
    } catch (e) {
      void window.showErrorMessage(`LoRA Sync: sync failed: ${errorText(e)}`, 'Open Log').then((c) => c && this.server.log.show());
      return undefined;
    }
    this.store.schedule();
    this.report(summary);
    return summary;
  }

  private report(s: SyncSummary): void {
    const line = `${s.synced} synced, ${s.failed} failed, ${s.skipped} skipped, ${s.refused} refused${s.cancelled ? ' (cancelled)' : ''}`;
    this.server.log.info(`sync: ${line}`);
    if (!s.failed) {
      void window.showInformationMessage(`LoRA Sync: ${line}`);
      return;
    }
    void window.showWarningMessage(`LoRA Sync: ${line}`, 'Show Failures').then((choice) => {
      if (choice !== 'Show Failures') return;
      for (const f of s.folders) for (const l of f.loras) for (const c of l.copies) {
        if (c.outcome === 'failed') this.server.log.error(`${l.name}: ${c.path}: ${c.reason}`);
      }
      this.server.log.show(true);
    });
  }

  async verify(arg: LoraArg | 'all'): Promise<VerifyResult | undefined> {
    const target = arg === 'all' ? undefined : targetFromArg(arg) ?? (await pickLora(this.store, 'Verify LoRA'));
    if (arg !== 'all' && !target) return undefined;
    let result: VerifyResult;
    try {
      result = await withServerProgress(this.server, `LoRA Sync: verifying ${target?.lora ?? 'all LoRAs'}`, (workDoneToken, token) =>
        this.server.request(VerifyRequest, { lora: target?.lora, folder: target?.folder, workDoneToken }, token));
    } catch (e) {
      void window.showErrorMessage(`LoRA Sync: verify failed: ${errorText(e)}`);
      return undefined;
    }
    const bad = result.folders.flatMap((f) => f.report.loras.filter((l) => !l.is_consistent));
    if (result.is_consistent) {
      void window.showInformationMessage(`LoRA Sync: ${target ? target.lora : 'every LoRA'} is consistent.`);
    } else {
      for (const l of bad) for (const i of l.issues) this.server.log.warn(`verify ${l.name}: ${i.type} ${i.file}${i.param ? ` ${i.param}` : ''}: ${i.detail}`);
      void window.showWarningMessage(`LoRA Sync: ${bad.length} LoRA${bad.length === 1 ? '' : 's'} not consistent.`, 'Show Issues')
        .then((c) => c && this.server.log.show(true));
    }
    return result;
  }
}
