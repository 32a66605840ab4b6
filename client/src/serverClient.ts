/**
 * Starts the language server over IPC and is the one place that talks to it: typed requests from
 * server/src/protocol/messages.ts, the server status, restarts. Settings reach the server through
 * the configuration middleware below (explicit values only, see settings.ts).
 */
import * as path from 'node:path';
import {
  type CancellationToken,
  Disposable,
  EventEmitter,
  type ExtensionContext,
  type LogOutputChannel,
  Uri,
  window,
  workspace,
} from 'vscode';
import {
  CloseAction,
  type CloseHandlerResult,
  DidChangeConfigurationNotification,
  ErrorAction,
  type ErrorHandlerResult,
  LanguageClient,
  type LanguageClientOptions,
  type RequestType,
  ResponseError,
  type ServerOptions,
  State,
  TransportKind,
  WorkDoneProgress,
  type WorkDoneProgressBegin,
  type WorkDoneProgressEnd,
  type WorkDoneProgressReport,
} from 'vscode-languageclient/node';
import {
  type InitializationOptions,
  type ServerStatus,
  StatusChangedNotification,
} from '../../server/src/protocol/messages';
import { SECTION, explicitSettings } from './settings';

/** Crashes tolerated in RESTART_WINDOW_MS before the client gives up and asks the user. */
const MAX_RESTARTS = 4;
const RESTART_WINDOW_MS = 3 * 60_000;

/** As vscode-jsonrpc types a request's parameter (null-typed params may be left out). */
type RequestParam<P> = P extends null ? P | undefined : P;

export type ProgressValue = WorkDoneProgressBegin | WorkDoneProgressReport | WorkDoneProgressEnd;

/**
 * The server's environment: glibc's malloc gives each thread that allocates (libuv's file-system pool
 * reading thousands of checkpoints) an arena of its own, and freed memory in them is seldom returned.
 * In the soak suite's long mode that grew the server's RSS from ~310 MB to ~750 MB over an hour while
 * its live JavaScript heap stayed ~60-65 MB; with two arenas the growth flattened (RELIABILITY.md, Soak).
 */
const SERVER_ENV = { ...process.env, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2' };

export class ServerClient implements Disposable {
  private client: LanguageClient | undefined;
  private readonly crashes: number[] = [];
  private readonly statusEmitter = new EventEmitter<ServerStatus>();
  private readonly disposables: Disposable[] = [this.statusEmitter];
  private progressSeq = 0;
  /** Last status: the server's own, or ours when the process is not running. */
  status: ServerStatus = { state: 'starting', folders: 0, loras: 0, problems: 0 };
  readonly onDidChangeStatus = this.statusEmitter.event;

  constructor(
    private readonly context: ExtensionContext,
    readonly log: LogOutputChannel,
  ) {}

  async start(): Promise<void> {
    const module = this.context.asAbsolutePath(path.join('dist', 'server.js'));
    const serverOptions: ServerOptions = {
      run: { module, transport: TransportKind.ipc, options: { env: SERVER_ENV } },
      debug: {
        module,
        transport: TransportKind.ipc,
        options: { env: SERVER_ENV, execArgv: ['--nolazy', '--inspect=6009'] },
      },
    };
    // An untrusted workspace is read and reported, never written: the server enforces it too.
    const initializationOptions: InitializationOptions = {
      settings: explicitSettings(),
      readOnly: !workspace.isTrusted,
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: 'file', pattern: '**/*.{pt,safetensors}' }],
      outputChannel: this.log,
      initializationOptions,
      // No `synchronize.configurationSection`: the server registers for `loraSync` itself, and a
      // second registration would send every change twice (the first before `initialized`).
      errorHandler: { error: (_e, _m, count) => this.onError(count), closed: () => this.onClosed() },
      middleware: {
        workspace: {
          // The server pulls settings per folder: answer with explicit values, never defaults.
          configuration: async (params, token, next) => {
            const answer = await next(params, token);
            if (answer instanceof ResponseError) return answer;
            return params.items.map((item, i) =>
              item.section === SECTION
                ? explicitSettings(item.scopeUri ? Uri.parse(item.scopeUri) : undefined)
                : answer[i],
            );
          },
          // The pushed form would carry every default too; send the explicit values instead.
          didChangeConfiguration: async (sections, next) => {
            if (sections?.includes(SECTION)) await this.settingsChanged();
            else await next(sections);
          },
        },
      },
    };
    const client = new LanguageClient('loraSync', 'LoRA Sync', serverOptions, clientOptions);
    this.client = client;
    this.disposables.push(
      client.onNotification(StatusChangedNotification, (s) => this.setStatus(s)),
      client.onDidChangeState((e) => {
        if (e.newState === State.Stopped)
          this.setStatus({ ...this.status, state: 'error', message: 'The LoRA Sync server is not running.' });
        if (e.newState === State.Starting) this.setStatus({ ...this.status, state: 'starting', message: undefined });
      }),
    );
    await client.start();
  }

  /** Sends the settings again (trust granted, lora-sync.json edited): the server pulls per folder. */
  async settingsChanged(): Promise<void> {
    if (!this.client?.isRunning()) return;
    await this.client.sendNotification(DidChangeConfigurationNotification.type, {
      settings: { [SECTION]: explicitSettings() },
    });
  }

  async request<P, R>(type: RequestType<P, R, void>, params: RequestParam<P>, token?: CancellationToken): Promise<R> {
    const client = this.client;
    if (!client?.isRunning()) throw new Error('The LoRA Sync server is not running (LoRA Sync: Restart Server).');
    return token ? client.sendRequest(type, params, token) : client.sendRequest(type, params);
  }

  /** A fresh work-done token and its progress events; dispose the handle when the request ends. */
  workDone(onValue: (v: ProgressValue) => void): { token: string; handle: Disposable } {
    const token = `loraSync-${process.pid}-${++this.progressSeq}`;
    const client = this.client;
    const handle = client ? client.onProgress(WorkDoneProgress.type, token, onValue) : new Disposable(() => undefined);
    return { token, handle };
  }

  async restart(): Promise<void> {
    this.crashes.length = 0;
    if (!this.client) return this.start();
    await this.client.restart();
  }

  private setStatus(s: ServerStatus): void {
    this.status = s;
    this.statusEmitter.fire(s);
  }

  private onError(count: number | undefined): ErrorHandlerResult {
    // Like the default handler: a few broken messages are tolerated, then the connection is shut.
    return { action: count !== undefined && count <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown };
  }

  private onClosed(): CloseHandlerResult {
    const now = Date.now();
    this.crashes.push(now);
    while (this.crashes.length && now - this.crashes[0] > RESTART_WINDOW_MS) this.crashes.shift();
    if (this.crashes.length <= MAX_RESTARTS) {
      this.log.warn('The LoRA Sync server stopped unexpectedly; restarting it.');
      void this.notice('The LoRA Sync server stopped unexpectedly and was restarted.', false);
      return { action: CloseAction.Restart, handled: true };
    }
    this.log.error(`The LoRA Sync server stopped ${this.crashes.length} times in 3 minutes; not restarting it.`);
    void this.notice(
      `The LoRA Sync server stopped ${this.crashes.length} times in 3 minutes and was not restarted.`,
      true,
    );
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  private async notice(message: string, offerRestart: boolean): Promise<void> {
    const choice = await window.showWarningMessage(message, 'Show Log', ...(offerRestart ? ['Restart'] : []));
    if (choice === 'Show Log') this.log.show();
    if (choice === 'Restart')
      await this.restart().catch((e: unknown) => this.log.error(`restart failed: ${String(e)}`));
  }

  async stop(): Promise<void> {
    await this.client?.stop();
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
    void this.client?.dispose();
  }
}

/** Re-send settings when a folder's lora-sync.json changes or trust is granted. */
export function watchConfigSources(server: ServerClient): Disposable[] {
  const watcher = workspace.createFileSystemWatcher('**/lora-sync.json');
  const changed = () => void server.settingsChanged().catch((e: unknown) => server.log.error(`settings: ${String(e)}`));
  return [
    watcher,
    watcher.onDidChange(changed),
    watcher.onDidCreate(changed),
    watcher.onDidDelete(changed),
    workspace.onDidGrantWorkspaceTrust(changed),
  ];
}
