/**
 * The language server's entry point: the connection and its lifecycle. State lives in the host
 * (./host.ts: one Workspace + LiveIndex per workspace folder, diagnostics for every file that needs
 * attention, open or not), the `loraSync/*` requests in ./requests.ts. Started by the client over
 * IPC (or `--stdio`, as the tests do). One bad file or one failing request never stops the process:
 * request errors become ResponseErrors, folder errors show in the server status.
 *
 * Watching: on by default; `initializationOptions.watch: false` leaves only the periodic reconcile.
 */
import '../io/gcTuning'; // first: this process's GC setting, before any other module runs
import { pathToFileURL } from 'node:url';
import {
  createConnection,
  DidChangeConfigurationNotification,
  type InitializeParams,
  ProposedFeatures,
  TextDocumentSyncKind,
  type WorkspaceFolder,
} from 'vscode-languageserver/node';
import { DIGEST_ALG } from '../formats/fingerprint';
import { hashBackend } from '../formats/hashBackend';
import type { InitializationOptions } from '../protocol/messages';
import { ServerHost } from './host';
import { registerRequests } from './requests';

const connection = createConnection(ProposedFeatures.all);
const host = new ServerHost(connection);
let registerConfiguration = false;
let clientWorkspaceFolders = false;

registerRequests(connection, host);

connection.onInitialize((params: InitializeParams) => {
  const opts = params.initializationOptions as InitializationOptions | undefined;
  host.initOptions = opts && typeof opts === 'object' ? opts : {};
  const caps = params.capabilities;
  host.pullConfiguration = caps.workspace?.configuration === true;
  host.clientProgress = caps.window?.workDoneProgress === true;
  registerConfiguration = caps.workspace?.didChangeConfiguration?.dynamicRegistration === true;
  clientWorkspaceFolders = caps.workspace?.workspaceFolders === true;
  const list: WorkspaceFolder[] = params.workspaceFolders?.length
    ? params.workspaceFolders
    : params.rootUri
      ? [{ uri: params.rootUri, name: 'root' }]
      : params.rootPath
        ? [{ uri: pathToFileURL(params.rootPath).toString(), name: 'root' }]
        : [];
  for (const wf of list) host.addFolder(wf);
  return {
    capabilities: {
      textDocumentSync: TextDocumentSyncKind.None,
      workspace: { workspaceFolders: { supported: true, changeNotifications: true } },
    },
    serverInfo: { name: 'lora-sync' },
  };
});

connection.onInitialized(() => {
  // Which hashers run (native or portable: same digests, different speed), for the log a user sends.
  connection.console.info(`LoRA Sync server: digests ${DIGEST_ALG}, hashing ${hashBackend().name}`);
  if (registerConfiguration)
    void connection.client.register(DidChangeConfigurationNotification.type, { section: 'loraSync' });
  const settings = host.overridesFrom(host.initOptions.settings);
  void host.working(async () => {
    await Promise.all([...host.folders.values()].map((f) => host.restartFolder(f, settings)));
    host.starting = false;
  });
  if (clientWorkspaceFolders) {
    connection.workspace.onDidChangeWorkspaceFolders((e) => {
      void (async () => {
        for (const r of e.removed) await host.removeFolder(r.uri);
        for (const a of e.added) {
          const f = host.addFolder(a);
          if (f) void host.working(() => host.restartFolder(f, host.overridesFrom(host.initOptions.settings)));
        }
      })();
    });
  }
});

let configChain: Promise<void> = Promise.resolve();
connection.onDidChangeConfiguration((change) => {
  const pushed = (change.settings as { loraSync?: unknown } | undefined)?.loraSync;
  // One reconfiguration at a time, so quick successive changes end in the last one.
  configChain = configChain
    .then(() => host.reconfigure(pushed))
    .catch((e) => connection.console.error(`configuration: ${(e as Error).message}`));
});

connection.onShutdown(() => host.stopAll());

connection.listen();
