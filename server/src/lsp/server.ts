/**
 * The language server process (started by the client over IPC). Issue "The language server and
 * the VS Code client" fills it with the live index; for now it answers `initialize` and stays idle,
 * so the extension's plumbing can be built and packaged.
 */
import { createConnection, ProposedFeatures, TextDocumentSyncKind } from 'vscode-languageserver/node';

const connection = createConnection(ProposedFeatures.all);
connection.onInitialize(() => ({ capabilities: { textDocumentSync: TextDocumentSyncKind.None } }));
connection.listen();
