/**
 * The VS Code client: starts the language server and wires the UI to it. Everything it shows comes
 * from the server's typed requests (server/src/protocol/, the only server code it may import); the
 * client never reads or writes a checkpoint.
 */
import { commands, type ExtensionContext, window } from 'vscode';
import { registerCommands } from './commands';
import { CopyMapStore } from './copyMapStore';
import { CopyMapTree } from './copyMapTree';
import { StatusDecorations } from './decorations';
import { HintNotifier } from './hints';
import { HistoryView } from './historyView';
import { registerInspector } from './inspector/inspectorProvider';
import { ServerClient, watchConfigSources } from './serverClient';
import { StatusBar } from './statusBar';
import { snapshotTree } from './viewSnapshot';

let server: ServerClient | undefined;

export async function activate(context: ExtensionContext): Promise<void> {
  const log = window.createOutputChannel('LoRA Sync', { log: true });
  server = new ServerClient(context, log);
  const store = new CopyMapStore(server);
  const history = new HistoryView(server, store);
  const tree = new CopyMapTree(store, server);
  // The UI exists before the server starts, so a failed start still shows in the status bar.
  context.subscriptions.push(
    log,
    server,
    store,
    history,
    tree,
    new StatusBar(server, store),
    new StatusDecorations(store),
    new HintNotifier(store),
    ...registerCommands(server, store, history),
    ...watchConfigSources(server),
    ...registerInspector(context.extensionUri, server, store),
    // For tests and automation: both views as they render now (hidden from the palette).
    // `{ resolve: true }`: tooltips as they read once hovered (the Copy Map's hashes).
    commands.registerCommand('loraSync.getViewSnapshot', async (opts?: { resolve?: boolean }) => ({
      copyMap: await snapshotTree(tree, 4, undefined, opts?.resolve === true),
      copyMapMessage: tree.view.message,
      history: await snapshotTree(history),
    })),
  );
  try {
    await server.start();
  } catch (e) {
    log.error(`The LoRA Sync server did not start: ${e instanceof Error ? e.message : String(e)}`);
    void window.showErrorMessage('LoRA Sync: the server did not start.', 'Show Log').then((c) => c && log.show());
    return;
  }
  store.schedule();
}

export async function deactivate(): Promise<void> {
  await server?.stop();
  server = undefined;
}
