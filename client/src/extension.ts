/**
 * The VS Code client: starts the language server and wires the UI to it. Everything it shows comes
 * from the server's typed requests (protocol.ts); the client never reads or writes a checkpoint.
 */
import { ExtensionContext, window } from 'vscode';
import { registerCommands } from './commands';
import { CopyMapStore } from './copyMapStore';
import { CopyMapTree } from './copyMapTree';
import { StatusDecorations } from './decorations';
import { HistoryView } from './historyView';
import { ServerClient, watchConfigSources } from './serverClient';
import { StatusBar } from './statusBar';

let server: ServerClient | undefined;

export async function activate(context: ExtensionContext): Promise<void> {
  const log = window.createOutputChannel('LoRA Sync', { log: true });
  server = new ServerClient(context, log);
  const store = new CopyMapStore(server);
  const history = new HistoryView(server, store);
  // The UI exists before the server starts, so a failed start still shows in the status bar.
  context.subscriptions.push(
    log, server, store, history,
    new CopyMapTree(store), new StatusBar(server, store), new StatusDecorations(store),
    ...registerCommands(server, store, history),
    ...watchConfigSources(server),
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
