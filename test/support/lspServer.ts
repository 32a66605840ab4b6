/** The built language server (dist/server.js) as a child process over stdio, initialized and past its first scan. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  createMessageConnection,
  IPCMessageReader,
  IPCMessageWriter,
  type MessageConnection,
  StreamMessageReader,
  StreamMessageWriter,
} from 'vscode-jsonrpc/node';
import type { PublishDiagnosticsParams } from 'vscode-languageserver-protocol';
import { ensureBuilt } from './files';
import { type ServerStatus, StatusChangedNotification } from '../../server/src/protocol/messages';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until<T>(what: string, ms: number, probe: () => T | undefined): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * `env`: extra environment for the server process (e.g. `LORA_SYNC_FAULTS`, the fault seam of io/faults.ts).
 * `capabilities`: the client's, as VS Code would send them (`{ window: { workDoneProgress: true } }` makes the
 * server create progress for its first scan; this client accepts it and keeps the `$/progress` it gets).
 * `onProgress`: called with each `$/progress` value as it comes, and the connection (to ask mid-scan).
 */
export async function startServer(
  dir: string,
  initializationOptions: object,
  onDiagnostics: (p: PublishDiagnosticsParams) => void,
  env: Record<string, string> = {},
  capabilities: object = {},
  onProgress?: (value: { kind: string; message?: string }, conn: MessageConnection) => void,
  /** `ipc`: over Node IPC, as the client starts it, which leaves stdout to the process (kept in log.stdout). */
  launch: { nodeArgs?: string[]; ipc?: boolean } = {},
) {
  const server = join(ensureBuilt(), '..', 'server.js');
  const child = spawn(process.execPath, [...(launch.nodeArgs ?? []), server, launch.ipc ? '--node-ipc' : '--stdio'], {
    stdio: launch.ipc ? ['pipe', 'pipe', 'pipe', 'ipc'] : ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const log = {
    stderr: '',
    stdout: '',
    messages: [] as string[],
    progress: [] as Array<{ kind: string; message?: string }>,
  };
  child.stderr!.on('data', (b) => (log.stderr += b));
  const conn = launch.ipc
    ? createMessageConnection(new IPCMessageReader(child), new IPCMessageWriter(child))
    : createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  if (launch.ipc) child.stdout!.on('data', (b) => (log.stdout += b));
  const statuses: ServerStatus[] = [];
  conn.onNotification('textDocument/publishDiagnostics', onDiagnostics);
  conn.onNotification(StatusChangedNotification, (s: ServerStatus) => {
    statuses.push(s);
  });
  conn.onNotification('window/logMessage', (m: { message: string }) => {
    log.messages.push(m.message);
  });
  conn.onRequest('window/workDoneProgress/create', () => null);
  conn.onNotification('$/progress', (p: { value: { kind: string; message?: string } }) => {
    log.progress.push(p.value);
    onProgress?.(p.value, conn);
  });
  conn.listen();
  const uri = pathToFileURL(dir).toString();
  await conn.sendRequest('initialize', {
    processId: process.pid,
    rootUri: uri,
    capabilities,
    workspaceFolders: [{ uri, name: 'ws' }],
    initializationOptions,
  });
  await conn.sendNotification('initialized', {});
  await until('the first scan', 20000, () => statuses.some((s) => s.state === 'ready'));
  return { child, conn, statuses, log };
}
