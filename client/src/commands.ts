/**
 * Every `loraSync.*` command. Each returns its result so extension-host tests can do
 * `await vscode.commands.executeCommand('loraSync.syncAll')` and inspect it:
 *
 *   syncLora(arg?)              SyncSummary | undefined   arg: tree node, id/name, or {lora, folder}; none: QuickPick
 *   forceSyncLora(arg?, opts?)  SyncSummary | undefined   opts.confirmed skips the modal confirmation
 *   verifyLora(arg?)            VerifyResult | undefined
 *   syncCopy(uri?, opts?)       SyncSummary | undefined   one copy (the LoRA inspector's button); opts.confirmed skips the force dialog
 *   syncAll()                   SyncSummary | undefined   (undefined: untrusted workspace or request error)
 *   verifyAll()                 VerifyResult | undefined
 *   showStats()                 StatsResult | undefined
 *   showHistory()               HistoryResult | undefined (focuses the History view)
 *   rescan()                    RescanResult | undefined
 *   showPlan(arg?)              PlanResult | undefined    arg as syncLora; none: every LoRA (opens a markdown dry run)
 *   refresh()                   CopyMapResult | undefined (re-fetches the copy map and history)
 *   getCopyMap()                CopyMapResult | undefined (the map the views show now, no request)
 *   getServerStatus()           ServerStatus
 *   useFolderAsSource(uri?)     UseFolderAsSourceResult | undefined   uri: an Explorer folder; none: a folder picker
 *   openLog(), restartServer(), revealInExplorer(fileNode), openSource(fileNode): undefined
 */
import { commands, type Disposable, type Uri, window, workspace } from 'vscode';
import {
  type CopyMapResult,
  type HistoryResult,
  PlanRequest,
  type PlanResult,
  RescanRequest,
  type RescanResult,
  type ServerStatus,
  StatsRequest,
  type StatsResult,
} from '../../server/src/protocol/messages';
import { scanPhasesText } from '../../server/src/protocol/reports';
import type { CopyMapStore } from './copyMapStore';
import type { FileNode } from './copyMapTree';
import type { HistoryView } from './historyView';
import { type LoraArg, targetFromArg } from './pickers';
import { planMarkdown, statsLines } from './reports';
import { errorText, withServerProgress } from './progress';
import type { ServerClient } from './serverClient';
import { useFolderAsSource } from './sourceFolderCommand';
import { type CopyArg, type ForceOptions, SyncCommands } from './syncCommands';

export function registerCommands(server: ServerClient, store: CopyMapStore, history: HistoryView): Disposable[] {
  const sync = new SyncCommands(server, store);
  const log = server.log;
  const failed = (what: string) => (e: unknown) => {
    void window.showErrorMessage(`LoRA Sync: ${what} failed: ${errorText(e)}`);
    return undefined;
  };

  const handlers: Record<string, (...args: never[]) => unknown> = {
    syncLora: (arg: LoraArg) => sync.syncLora(arg),
    forceSyncLora: (arg: LoraArg, opts?: ForceOptions) => sync.forceSyncLora(arg, opts),
    syncCopy: (arg: CopyArg, opts?: ForceOptions) => sync.syncCopy(arg, opts),
    verifyLora: (arg: LoraArg) => sync.verify(arg),
    syncAll: () => sync.syncAll(),
    verifyAll: () => sync.verify('all'),

    showStats: async (): Promise<StatsResult | undefined> => {
      const stats = await server.request(StatsRequest, undefined).catch(failed('stats'));
      if (!stats) return undefined;
      const lines = statsLines(stats);
      for (const l of lines) log.info(`stats: ${l}`);
      void window
        .showInformationMessage(`LoRA Sync: ${lines[0] ?? 'no folders'}`, 'Show All')
        .then((c) => c && log.show(true));
      return stats;
    },

    showHistory: async (): Promise<HistoryResult | undefined> => {
      await commands.executeCommand('loraSync.history.focus');
      return history.refresh();
    },

    rescan: async (): Promise<RescanResult | undefined> => {
      const result = await withServerProgress(server, 'LoRA Sync: rescanning', (workDoneToken, token) =>
        server.request(RescanRequest, { workDoneToken }, token),
      ).catch(failed('rescan'));
      if (result) {
        const read = result.folders.reduce((n, f) => n + f.summary.read, 0);
        const files = result.folders.reduce((n, f) => n + f.summary.files, 0);
        const phases = result.folders.flatMap((f) => (f.summary.timings ? [f.summary.timings] : []));
        log.info(`rescan: ${files} files, ${read} read${phases.length ? `; ${scanPhasesText(phases)}` : ''}`);
        await store.refresh();
      }
      return result;
    },

    showPlan: async (arg?: LoraArg): Promise<PlanResult | undefined> => {
      const target = targetFromArg(arg);
      const plan = await server
        .request(PlanRequest, { lora: target?.lora, folder: target?.folder })
        .catch(failed('plan'));
      if (!plan) return undefined;
      const doc = await workspace.openTextDocument({ language: 'markdown', content: planMarkdown(plan) });
      await window.showTextDocument(doc, { preview: true });
      return plan;
    },

    refresh: async (): Promise<CopyMapResult | undefined> => {
      const map = await store.refresh();
      if (history.view.visible) await history.refresh();
      return map;
    },
    getCopyMap: (): CopyMapResult | undefined => store.result,
    getServerStatus: (): ServerStatus => server.status,
    useFolderAsSource: (uri?: Uri) => useFolderAsSource(server, store, uri),

    openLog: () => log.show(),
    restartServer: async () => {
      await server.restart().catch(failed('restart'));
    },
    revealInExplorer: async (node?: FileNode) => {
      if (node?.uri) await commands.executeCommand('revealInExplorer', node.uri);
    },
    openSource: async (node?: FileNode) => {
      if (node?.sourceUri) await commands.executeCommand('vscode.open', node.sourceUri);
      else void window.showInformationMessage('LoRA Sync: this LoRA has no readable source.');
    },
  };
  return Object.entries(handlers).map(([name, fn]) => commands.registerCommand(`loraSync.${name}`, fn));
}
