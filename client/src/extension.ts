/**
 * The VS Code client: owns the UI and starts the language server over IPC. The UI (tree, commands,
 * status, decorations) arrives with the issue "The language server and the VS Code client".
 */
import * as path from 'node:path';
import type { ExtensionContext } from 'vscode';
import { LanguageClient, LanguageClientOptions, ServerOptions, TransportKind } from 'vscode-languageclient/node';

let client: LanguageClient | undefined;

export async function activate(context: ExtensionContext): Promise<void> {
  const module = context.asAbsolutePath(path.join('dist', 'server.js'));
  const serverOptions: ServerOptions = {
    run: { module, transport: TransportKind.ipc },
    debug: { module, transport: TransportKind.ipc, options: { execArgv: ['--nolazy', '--inspect=6009'] } },
  };
  const clientOptions: LanguageClientOptions = { documentSelector: [{ scheme: 'file', pattern: '**/*.{pt,safetensors}' }] };
  client = new LanguageClient('loraSync', 'LoRA Sync', serverOptions, clientOptions);
  await client.start();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
