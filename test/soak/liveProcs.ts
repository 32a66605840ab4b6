/**
 * The two long-running processes of the soak suite, started as users start them: the built language
 * server over stdio (driven as VS Code drives it: initialize with workspace folders, requests,
 * publishDiagnostics, log and show messages) and `lora-sync watch --json`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  createMessageConnection,
  type MessageConnection,
  StreamMessageReader,
  StreamMessageWriter,
} from 'vscode-jsonrpc/node';
import type { PublishDiagnosticsParams } from 'vscode-languageserver-protocol';
import { type ServerStatus, StatusChangedNotification } from '../../server/src/protocol/messages';
import { until } from '../support/lspServer';

/** Every process started here, so a failed test can end them (by pid) instead of leaving them running. */
const started: ChildProcess[] = [];

export function track<T extends ChildProcess>(child: T): T {
  started.push(child);
  return child;
}

/** SIGKILLs what is still running of the processes this module (or `track`) started. */
export function killLeftovers(): void {
  for (const c of started.splice(0))
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

function exitOf(child: ChildProcess): { exit?: Exit; done: Promise<Exit> } {
  const o: { exit?: Exit; done: Promise<Exit> } = {} as never;
  o.done = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      o.exit = { code, signal };
      resolve(o.exit);
    }),
  );
  return o;
}

export interface LiveServer {
  child: ChildProcess;
  conn: MessageConnection;
  statuses: ServerStatus[];
  /** window/logMessage (type 1 error, 2 warning, 3 info, 4 log) and window/showMessage. */
  logs: Array<{ type: number; message: string }>;
  shown: Array<{ type: number; message: string }>;
  stderr: () => string;
  exit: { exit?: Exit; done: Promise<Exit> };
}

export async function startLiveServer(
  serverJs: string,
  dir: string,
  onDiagnostics: (p: PublishDiagnosticsParams) => void,
  env: Record<string, string> = {},
): Promise<LiveServer> {
  const child = track(
    spawn(process.execPath, [serverJs, '--stdio'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      // As the VS Code client starts it (client/src/serverClient.ts SERVER_ENV): two malloc arenas.
      env: { ...process.env, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2', ...env },
    }),
  );
  const exit = exitOf(child);
  let stderr = '';
  child.stderr!.on('data', (b) => (stderr += b));
  const conn = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  const s: LiveServer = { child, conn, statuses: [], logs: [], shown: [], stderr: () => stderr, exit };
  conn.onNotification('textDocument/publishDiagnostics', onDiagnostics);
  conn.onNotification(StatusChangedNotification, (st: ServerStatus) => {
    s.statuses.push(st);
  });
  conn.onNotification('window/logMessage', (m: { type: number; message: string }) => {
    s.logs.push(m);
  });
  conn.onNotification('window/showMessage', (m: { type: number; message: string }) => {
    s.shown.push(m);
  });
  conn.listen();
  const uri = pathToFileURL(dir).toString();
  await conn.sendRequest('initialize', {
    processId: process.pid,
    rootUri: uri,
    capabilities: { window: { showMessage: {} } },
    workspaceFolders: [{ uri, name: 'soak' }],
    initializationOptions: {},
  });
  await conn.sendNotification('initialized', {});
  await until('the first scan', 180_000, () => s.statuses.some((x) => x.state === 'ready'));
  return s;
}

/** Shuts the server down as VS Code does (shutdown, exit) and returns how it ended. */
export async function stopLiveServer(s: LiveServer): Promise<Exit> {
  if (s.exit.exit) return s.exit.exit;
  await s.conn.sendRequest('shutdown').catch((e) => s.logs.push({ type: 0, message: `shutdown: ${e}` }));
  await s.conn.sendNotification('exit').catch(() => undefined);
  const timer = setTimeout(() => s.child.kill('SIGKILL'), 30_000);
  const e = await s.exit.done;
  clearTimeout(timer);
  s.conn.dispose();
  return e;
}

export interface WatchEvent {
  time: string;
  kind: string;
  [k: string]: unknown;
}

export interface LiveWatch {
  child: ChildProcess;
  events: WatchEvent[];
  /** Lines of stdout that are not JSON (there should be none). */
  other: string[];
  stderr: () => string;
  exit: { exit?: Exit; done: Promise<Exit> };
}

export async function startWatch(cliJs: string, dir: string, env: Record<string, string> = {}): Promise<LiveWatch> {
  const child = track(
    spawn(process.execPath, [cliJs, 'watch', '--json', '--root', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    }),
  );
  const w: LiveWatch = { child, events: [], other: [], stderr: () => stderr, exit: exitOf(child) };
  let stderr = '';
  let buf = '';
  child.stderr!.on('data', (b) => (stderr += b));
  // Decoded as a stream: a chunk may end inside a multi-byte character (an emoji folder name).
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (b: string) => {
    buf += b;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        w.events.push(JSON.parse(line) as WatchEvent);
      } catch {
        w.other.push(line);
      }
    }
  });
  await until('watch: first scan', 180_000, () => w.events.some((e) => e.kind === 'scanned') || w.exit.exit);
  if (w.exit.exit) throw new Error(`watch exited: ${stderr}`);
  return w;
}

export async function stopWatch(w: LiveWatch): Promise<Exit> {
  if (w.exit.exit) return w.exit.exit;
  w.child.kill('SIGTERM');
  const timer = setTimeout(() => w.child.kill('SIGKILL'), 30_000);
  const e = await w.exit.done;
  clearTimeout(timer);
  return e;
}

export const serverJsOf = (cliJs: string) => join(cliJs, '..', 'server.js');
