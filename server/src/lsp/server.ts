/**
 * The language server: one Workspace + LiveIndex per workspace folder, diagnostics for every file
 * that needs attention (open or not), and the `loraSync/*` requests of ./protocol.ts. Started by the
 * client over IPC (or `--stdio`, as the tests do). One bad file or one failing request never stops
 * the process: request errors become ResponseErrors, folder errors show in the server status.
 *
 * Watching: on by default; `initializationOptions.watch: false` leaves only the periodic reconcile.
 */
import { DIGEST_ALG } from '../formats/fingerprint';
import { hashBackend } from '../formats/hashBackend';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  type CancellationToken,
  createConnection,
  DidChangeConfigurationNotification,
  ErrorCodes,
  type InitializeParams,
  ProposedFeatures,
  type RequestHandler,
  ResponseError,
  TextDocumentSyncKind,
  type WorkDoneProgressReporter,
  type WorkspaceFolder,
} from 'vscode-languageserver/node';
import type { RequestType } from 'vscode-languageserver-protocol';
import { Workspace, type FileReport } from '../engine/workspace';
import { type LiveEvent, LiveIndex } from '../engine/liveIndex';
import { CONFIG_FILE, DEFAULT_CONFIG } from '../engine/config';
import { readFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { diagnosticsFor } from './diagnostics';
import { InspectError, inspectWorkspaceFile } from '../engine/inspectModel';
import {
  CopyMapRequest,
  type FolderParams,
  type FolderRef,
  HistoryRequest,
  type InitializationOptions,
  InspectRequest,
  LoraDetailsRequest,
  PlanRequest,
  RescanRequest,
  type RescanResult,
  type VerifyResult,
  type ServerStatus,
  ServerStatusRequest,
  StatsRequest,
  StatusChangedNotification,
  SyncRequest,
  type SyncSummary,
  VerifyRequest,
} from './protocol';

const connection = createConnection(ProposedFeatures.all);

interface Folder {
  uri: string;
  root: string;
  ws?: Workspace;
  live?: LiveIndex;
  /** The folder cannot be used (invalid lora-sync.json or settings, unreadable root). */
  error?: string;
  /** The watcher failed; the loop fell back to periodic reconciles. */
  watchError?: string;
  /** Settings overrides the current Workspace was opened with (JSON), to skip needless rebuilds. */
  settingsKey: string;
  /** Diagnostics last sent, by relative path: only files that have some. */
  sent: Map<string, { uri: string; key: string }>;
  /** Request work on this folder runs one job at a time. */
  lock: Promise<unknown>;
  /** Resolves once the folder's current Workspace has done its first scan. */
  ready: Promise<void>;
}

const folders = new Map<string, Folder>();
let initOptions: InitializationOptions = {};
let pullConfiguration = false;
let registerConfiguration = false;
let clientProgress = false;
let clientWorkspaceFolders = false;
let starting = true;
let busy = 0;
let lastStatus = '';

// ---- server status ---------------------------------------------------------------------------

function serverStatus(): ServerStatus {
  let loras = 0;
  let problems = 0;
  const errors: string[] = [];
  for (const f of folders.values()) {
    if (f.ws) loras += f.ws.copyMap().loras.size;
    problems += f.sent.size;
    if (f.error) errors.push(f.error);
    else if (f.watchError) errors.push(f.watchError);
  }
  const state = starting ? 'starting' : busy ? 'working' : errors.length ? 'error' : 'ready';
  return { state, ...(errors.length ? { message: errors.join('\n') } : {}), folders: folders.size, loras, problems };
}

function statusChanged(): void {
  const s = serverStatus();
  const key = JSON.stringify(s);
  if (key === lastStatus) return;
  lastStatus = key;
  void connection.sendNotification(StatusChangedNotification, s);
}

async function working<T>(job: () => Promise<T>): Promise<T> {
  busy++;
  statusChanged();
  try {
    return await job();
  } finally {
    busy--;
    statusChanged();
  }
}

// ---- diagnostics -----------------------------------------------------------------------------

function publishFile(f: Folder, rel: string, report: FileReport | undefined): void {
  const ws = f.ws;
  const uriOf = (r: string) => pathToFileURL(ws ? ws.abs(r) : `${f.root}/${r}`).toString();
  const diagnostics = ws && report ? diagnosticsFor(report, ws.status(rel)?.source, uriOf) : [];
  const was = f.sent.get(rel);
  if (!diagnostics.length) {
    if (!was) return;
    f.sent.delete(rel);
    void connection.sendDiagnostics({ uri: was.uri, diagnostics: [] });
    return;
  }
  const key = JSON.stringify(diagnostics);
  const uri = uriOf(rel);
  if (was && was.key === key && was.uri === uri) return;
  if (was && was.uri !== uri) void connection.sendDiagnostics({ uri: was.uri, diagnostics: [] });
  f.sent.set(rel, { uri, key });
  void connection.sendDiagnostics({ uri, diagnostics });
}

/** Every file of the folder; files no longer there (or no longer a problem) are cleared. */
async function publishAll(f: Folder): Promise<void> {
  const files = f.ws ? (await f.ws.report()).files : [];
  const seen = new Set<string>();
  for (const r of files) {
    seen.add(r.path);
    publishFile(f, r.path, r);
  }
  for (const rel of [...f.sent.keys()]) if (!seen.has(rel)) publishFile(f, rel, undefined);
  statusChanged();
}

/** The changed files and every file of the LoRAs they belong to (a source moving on changes its copies' messages). */
function publishChanged(f: Folder, paths: string[]): void {
  const ws = f.ws;
  if (!ws) return;
  const rels = new Set(paths);
  const groups = ws.copyMap().loras;
  for (const p of paths) {
    const id = ws.entry(p)?.loraId;
    const g = id ? groups.get(id) : undefined;
    if (g) for (const m of [...g.sources, ...g.copies, ...g.broken]) rels.add(m.path);
  }
  for (const rel of rels) {
    const e = ws.entry(rel);
    publishFile(f, rel, e ? ws.fileReport(e) : undefined);
  }
  statusChanged();
}

// ---- folders ---------------------------------------------------------------------------------

const KNOWN_KEYS = new Set(Object.keys(DEFAULT_CONFIG));

/** Settings → EngineConfig overrides: known keys only (VS Code adds its own), unset values left out. */
function overridesFrom(settings: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (settings && typeof settings === 'object') {
    for (const [k, v] of Object.entries(settings)) if (KNOWN_KEYS.has(k) && v !== null && v !== undefined) out[k] = v;
  }
  // An untrusted workspace is never written to, not even by auto-sync.
  if (initOptions.readOnly) out.autoSync = 'off';
  return out;
}

function newFolder(uri: string, root: string): Folder {
  return { uri, root, settingsKey: '', sent: new Map(), lock: Promise.resolve(), ready: Promise.resolve() };
}

function onLive(f: Folder, live: LiveIndex, e: LiveEvent): void {
  if (f.live !== live) return; // an index replaced by a rebuild
  switch (e.kind) {
    case 'statuses':
      publishChanged(
        f,
        e.changes.map((c) => c.path),
      );
      break;
    case 'synced': // auto-sync wrote copies: their statuses changed without a `statuses` event
      void publishAll(f);
      if (e.result.failed)
        connection.console.warn(`${f.root}: auto-sync (${e.reason}): ${e.result.failed} copies failed`);
      break;
    case 'watch-error':
      f.watchError = `${f.root}: ${e.message}. ${e.advice}`;
      connection.console.error(f.watchError);
      statusChanged();
      break;
    case 'error':
      connection.console.error(`${f.root}: ${e.message}`);
      break;
    default:
      break;
  }
}

/** Opens the folder's Workspace (with these settings), runs the first scan, starts the live loop, publishes. */
async function startFolder(f: Folder, settings: Record<string, unknown>): Promise<void> {
  const old = f.live;
  f.live = undefined;
  await old?.stop().catch(() => undefined);
  f.settingsKey = `${JSON.stringify(settings)}\u0000${await readFile(join(f.root, CONFIG_FILE), 'utf8').catch(() => '')}`;
  f.error = undefined;
  f.watchError = undefined;
  let progress: WorkDoneProgressReporter | undefined;
  try {
    const ws = await Workspace.open(f.root, settings);
    if (initOptions.readOnly) ws.setReadOnly();
    f.ws = ws;
    if (clientProgress) {
      // A scan of our own first, for progress; the live index's first scan is then warm (no file re-read).
      progress = await connection.window.createWorkDoneProgress();
      progress.begin('LoRA Sync: scanning', 0, f.root);
      await ws.scan({
        onProgress: (done, total) =>
          progress?.report(total ? Math.round((done / total) * 100) : 100, `${done} / ${total} files`),
      });
    }
    const live: LiveIndex = new LiveIndex(ws, (e) => onLive(f, live, e), {
      watch: initOptions.watch !== false,
      usePolling: initOptions.usePolling,
    });
    f.live = live;
    await live.start();
  } catch (e) {
    f.ws = undefined;
    f.error = `${f.root}: ${(e as Error).message}`;
    connection.console.error(f.error);
  } finally {
    progress?.done();
  }
  await publishAll(f);
}

/** Runs request work on one folder after what is already running there, once its first scan is done. */
function exclusive<T>(f: Folder, job: (ws: Workspace) => Promise<T>): Promise<T> {
  const run = f.lock.then(async () => {
    await f.ready;
    const ws = f.ws;
    if (!ws) throw new ResponseError(ErrorCodes.InternalError, f.error ?? `${f.root}: not ready`);
    // In the live index's own queue: a watcher batch never runs in the middle of a sync.
    return f.live ? f.live.run(() => job(ws)) : job(ws);
  });
  f.lock = run.catch(() => undefined);
  return run;
}

function addFolder(wf: WorkspaceFolder): Folder | undefined {
  if (!wf.uri.startsWith('file:')) {
    connection.console.warn(`${wf.uri}: only file folders are supported`);
    return undefined;
  }
  const f = newFolder(wf.uri, fileURLToPath(wf.uri));
  folders.set(wf.uri, f);
  return f;
}

async function removeFolder(uri: string): Promise<void> {
  const f = folders.get(uri);
  if (!f) return;
  folders.delete(uri);
  const live = f.live;
  f.live = undefined;
  f.ws = undefined;
  await live?.stop().catch(() => undefined);
  for (const rel of [...f.sent.keys()]) publishFile(f, rel, undefined);
  statusChanged();
}

/** Settings for each folder: pulled from the client when it can answer, else the pushed object. */
async function reconfigure(pushed: unknown): Promise<void> {
  for (const f of [...folders.values()]) {
    let settings: unknown = pushed;
    if (pullConfiguration)
      settings = await connection.workspace
        .getConfiguration({ scopeUri: f.uri, section: 'loraSync' })
        .catch(() => pushed);
    const o = overridesFrom(settings);
    // lora-sync.json is part of the configuration: an edit to it (the client forwards file changes
    // as a configuration change) rebuilds the folder like a settings change does.
    const fileText = await readFile(join(f.root, CONFIG_FILE), 'utf8').catch(() => '');
    const key = `${JSON.stringify(o)}\u0000${fileText}`;
    if (key === f.settingsKey && !f.error) continue;
    await working(async () => {
      const job = f.lock.then(() => startFolder(f, o));
      f.ready = job;
      f.lock = job.catch(() => undefined);
      await job;
    });
  }
}

// ---- requests --------------------------------------------------------------------------------

/** The folders a request covers: the one it names, or all usable ones. */
function targets(p: FolderParams | undefined): Folder[] {
  if (p?.folder) {
    const f = folders.get(p.folder);
    if (!f) throw new ResponseError(ErrorCodes.InvalidParams, `${p.folder} is not a workspace folder`);
    return [f];
  }
  return [...folders.values()];
}

const ref = (f: Folder): FolderRef => ({ uri: f.uri, root: f.root });

/** A LoRA id, or a name that names exactly one LoRA; undefined when this folder has no such LoRA. */
function resolveLora(ws: Workspace, key: string): string | undefined {
  const map = ws.copyMap().loras;
  if (map.has(key)) return key;
  const byName = [...map.values()].filter((g) => g.name === key);
  return byName.length === 1 ? byName[0].id : undefined;
}

/** Each folder that can answer, after its first scan; folders in error are left out. */
async function usable(p: FolderParams | undefined): Promise<Array<{ f: Folder; ws: Workspace }>> {
  const out: Array<{ f: Folder; ws: Workspace }> = [];
  for (const f of targets(p)) {
    await f.ready;
    if (f.ws) out.push({ f, ws: f.ws });
  }
  return out;
}

function handle<P, R>(type: RequestType<P, R, void>, fn: (p: P, token: CancellationToken) => Promise<R>): void {
  const handler = async (p: P, token: CancellationToken): Promise<R> => {
    try {
      return await fn(p, token);
    } catch (e) {
      if (e instanceof ResponseError) throw e;
      connection.console.error(`${type.method}: ${(e as Error).stack ?? e}`);
      throw new ResponseError(ErrorCodes.InternalError, `${type.method}: ${(e as Error).message}`);
    }
  };
  // A thrown ResponseError goes back to the client as the request's error; the process carries on.
  connection.onRequest(type, handler as unknown as RequestHandler<P, R, void>);
}

function progressFor(
  token: CancellationToken,
  workDoneToken: string | number | undefined,
  title: string,
): { reporter: WorkDoneProgressReporter; cancelled: () => boolean } {
  const reporter = connection.window.attachWorkDoneProgress(workDoneToken);
  reporter.begin(title, 0, undefined, true);
  return { reporter, cancelled: () => token.isCancellationRequested };
}

const percent = (done: number, total: number) => (total ? Math.min(100, Math.round((done / total) * 100)) : 100);

interface LongWork {
  cancelled: () => boolean;
  report: (done: number, total: number, what?: string) => void;
}

/**
 * Long work over folders (sync, verify, rescan): the server shows as working, the client gets
 * work-done progress, each folder is visited in turn until the request is cancelled.
 */
function overFolders(
  list: Folder[],
  token: CancellationToken,
  workDoneToken: string | number | undefined,
  title: string,
  visit: (f: Folder, work: LongWork) => Promise<void>,
): Promise<void> {
  return working(async () => {
    const { reporter, cancelled } = progressFor(token, workDoneToken, title);
    const work: LongWork = {
      cancelled,
      report: (done, total, what) => reporter.report(percent(done, total), what ?? `${done} / ${total} files`),
    };
    try {
      for (const f of list) {
        if (cancelled()) break;
        await visit(f, work);
      }
    } finally {
      reporter.done();
    }
  });
}

handle(CopyMapRequest, async (p) => ({
  folders: await Promise.all(
    (await usable(p)).map(async ({ f, ws }) => {
      const r = await ws.report();
      return { ...ref(f), loras: r.loras, files: r.files };
    }),
  ),
}));

handle(LoraDetailsRequest, async (p) => {
  if (!p?.id) throw new ResponseError(ErrorCodes.InvalidParams, 'loraDetails needs an id');
  for (const { f, ws } of await usable(p)) {
    const id = resolveLora(ws, p.id);
    const g = id ? ws.copyMap().loras.get(id) : undefined;
    if (!g) continue;
    const r = (await ws.report()).loras.find((l) => l.id === g.id);
    const files = [...g.sources, ...g.copies, ...g.broken]
      .sort((a, b) => (a.path < b.path ? -1 : 1))
      .map((e) => ws.fileReport(e));
    return { ...ref(f), id: g.id, name: g.name, source: r?.source ?? null, files };
  }
  throw new ResponseError(ErrorCodes.InvalidParams, `no LoRA with id or name '${p.id}'`);
});

/** `copies` of a plan or sync request: relative paths, compared in NFC like every indexed path. */
function copiesParam(copies: unknown): string[] | undefined {
  if (copies === undefined || copies === null) return undefined;
  if (!Array.isArray(copies) || !copies.every((c) => typeof c === 'string'))
    throw new ResponseError(ErrorCodes.InvalidParams, 'copies must be a list of workspace-relative paths');
  return copies.map((c: string) => c.normalize('NFC'));
}

handle(PlanRequest, async (p) => {
  const out = [];
  for (const { f, ws } of await usable(p)) {
    const id = p?.lora ? resolveLora(ws, p.lora) : undefined;
    if (p?.lora && !id) continue;
    out.push({
      ...ref(f),
      plan: ws.plan({ loras: id ? [id] : undefined, force: p?.force, copies: copiesParam(p?.copies) }),
    });
  }
  if (p?.lora && !out.length) throw new ResponseError(ErrorCodes.InvalidParams, `no LoRA with id or name '${p.lora}'`);
  return { folders: out };
});

handle(SyncRequest, async (p, token) => {
  if (initOptions.readOnly)
    throw new ResponseError(
      ErrorCodes.InvalidRequest,
      'this workspace is not trusted: LoRA Sync reads and reports but never writes here',
    );
  if (!p || (!p.lora && !p.all))
    throw new ResponseError(ErrorCodes.InvalidParams, 'sync needs a lora (id or name) or all: true');
  if (p.lora && p.all) throw new ResponseError(ErrorCodes.InvalidParams, 'sync takes a lora or all: true, not both');
  if (p.match !== undefined && (!Number.isInteger(p.match) || p.match < 0))
    throw new ResponseError(ErrorCodes.InvalidParams, 'match must be a whole number ≥ 0');
  const copies = copiesParam(p.copies);
  const out: SyncSummary = { synced: 0, failed: 0, skipped: 0, refused: 0, cancelled: false, folders: [] };
  let found = false;
  const list = targets(p);
  await overFolders(list, token, p.workDoneToken, 'LoRA Sync: syncing', (f, work) =>
    exclusive(f, async (ws) => {
      const id = p.lora ? resolveLora(ws, p.lora) : undefined;
      if (p.lora && !id) return;
      found = true;
      const plan = ws.plan({ loras: id ? [id] : undefined, force: p.force, copies });
      const res = await ws.sync(plan, {
        reason: p.reason ?? (p.all ? 'FULL_SYNC' : 'MANUAL'),
        match: p.match,
        cancelled: work.cancelled,
        onProgress: (done, total, path) => work.report(done, total, path),
      });
      await publishAll(f);
      out.synced += res.synced;
      out.failed += res.failed;
      out.skipped += res.skipped;
      out.refused += res.refused;
      out.cancelled ||= res.cancelled;
      out.folders.push({
        ...ref(f),
        ...(res.historyError ? { historyError: res.historyError } : {}),
        loras: res.loras.map((l) => ({
          id: l.id,
          name: l.name,
          ...(l.source ? { source: l.source } : {}),
          copies: l.copies.map(({ entry: _entry, ...c }) => c),
        })),
      });
    }).catch((e) => {
      // One folder failing (config error) does not stop the others.
      if (list.length === 1) throw e;
      connection.console.error(`${f.root}: sync failed: ${(e as Error).message}`);
    }),
  );
  if (p.lora && !found) throw new ResponseError(ErrorCodes.InvalidParams, `no LoRA with id or name '${p.lora}'`);
  out.cancelled ||= token.isCancellationRequested;
  return out;
});

handle(VerifyRequest, async (p, token) => {
  const out: VerifyResult['folders'] = [];
  await overFolders(targets(p), token, p?.workDoneToken, 'LoRA Sync: verifying', async (f, work) => {
    if (!f.ws) return;
    out.push(
      await exclusive(f, async (ws) => {
        // Verify what is on disk now, not what the index last saw.
        const s = await ws.scan({ cancelled: work.cancelled, onProgress: (done, total) => work.report(done, total) });
        if (s.changes.length)
          publishChanged(
            f,
            s.changes.map((c) => c.path),
          );
        const id = p?.lora ? resolveLora(ws, p.lora) : undefined;
        const report = ws.verify(p?.lora ? [id ?? p.lora] : undefined);
        if (!work.cancelled()) await ws.recordVerify(report);
        return { ...ref(f), report };
      }),
    );
  });
  return { is_consistent: out.every((r) => r.report.is_consistent), folders: out };
});

handle(StatsRequest, async (p) => ({
  folders: await Promise.all((await usable(p)).map(async ({ f, ws }) => ({ ...ref(f), stats: await ws.stats() }))),
}));

handle(HistoryRequest, async (p) => ({
  folders: await Promise.all(
    (await usable(p)).map(async ({ f, ws }) => {
      const lora = p?.lora ? (resolveLora(ws, p.lora) ?? p.lora) : undefined;
      const { events } = await ws.history.read({ limit: p?.limit, loraId: lora });
      return { ...ref(f), events };
    }),
  ),
}));

handle(RescanRequest, async (p, token) => {
  const out: RescanResult['folders'] = [];
  await overFolders(targets(p), token, p?.workDoneToken, 'LoRA Sync: scanning', async (f, work) => {
    if (!f.ws) return;
    out.push(
      await exclusive(f, async (ws) => {
        const summary = await ws.scan({
          cancelled: work.cancelled,
          onProgress: (done, total) => work.report(done, total),
        });
        await publishAll(f);
        return { ...ref(f), summary };
      }),
    );
  });
  return { folders: out };
});

/** The workspace folder a file lies in (the innermost, when folders nest). */
function folderOf(abs: string): Folder | undefined {
  let best: Folder | undefined;
  for (const f of folders.values()) {
    const inside = abs.startsWith(f.root.endsWith(sep) ? f.root : f.root + sep);
    if (inside && (!best || f.root.length > best.root.length)) best = f;
  }
  return best;
}

handle(InspectRequest, async (p, token) => {
  if (!p?.uri || typeof p.uri !== 'string')
    throw new ResponseError(ErrorCodes.InvalidParams, 'inspect needs the uri of a file');
  let abs: string;
  try {
    abs = fileURLToPath(p.uri);
  } catch {
    throw new ResponseError(ErrorCodes.InvalidParams, `${p.uri}: only files on disk (file: URIs) can be inspected`);
  }
  const f = folderOf(abs);
  if (!f)
    throw new ResponseError(
      ErrorCodes.InvalidParams,
      `${abs} is not inside an open workspace folder: LoRA Sync inspects the files of the folders it watches`,
    );
  await f.ready;
  const ws = f.ws;
  if (!ws) throw new ResponseError(ErrorCodes.InternalError, f.error ?? `${f.root}: not ready`);
  // Read-only and outside the folder's queue: it reads the index as it is and opens files by
  // handle, which atomic renames never tear, so a long sync does not hold the view back.
  try {
    return {
      ...ref(f),
      ...(await inspectWorkspaceFile(ws, abs, {
        unlimited: p.compareAll === true,
        cancelled: () => token.isCancellationRequested,
      })),
    };
  } catch (e) {
    if (e instanceof InspectError) throw new ResponseError(ErrorCodes.InvalidParams, e.message);
    throw e;
  }
});

connection.onRequest(ServerStatusRequest, () => serverStatus());

// ---- lifecycle -------------------------------------------------------------------------------

connection.onInitialize((params: InitializeParams) => {
  const opts = params.initializationOptions as InitializationOptions | undefined;
  initOptions = opts && typeof opts === 'object' ? opts : {};
  const caps = params.capabilities;
  pullConfiguration = caps.workspace?.configuration === true;
  registerConfiguration = caps.workspace?.didChangeConfiguration?.dynamicRegistration === true;
  clientProgress = caps.window?.workDoneProgress === true;
  clientWorkspaceFolders = caps.workspace?.workspaceFolders === true;
  const list: WorkspaceFolder[] = params.workspaceFolders?.length
    ? params.workspaceFolders
    : params.rootUri
      ? [{ uri: params.rootUri, name: 'root' }]
      : params.rootPath
        ? [{ uri: pathToFileURL(params.rootPath).toString(), name: 'root' }]
        : [];
  for (const wf of list) addFolder(wf);
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
  const settings = overridesFrom(initOptions.settings);
  void working(async () => {
    await Promise.all(
      [...folders.values()].map((f) => {
        const job = startFolder(f, settings);
        f.ready = job;
        f.lock = job.catch(() => undefined);
        return job;
      }),
    );
    starting = false;
  });
  if (clientWorkspaceFolders) {
    connection.workspace.onDidChangeWorkspaceFolders((e) => {
      void (async () => {
        for (const r of e.removed) await removeFolder(r.uri);
        for (const a of e.added) {
          const f = addFolder(a);
          if (!f) continue;
          const job = working(() => startFolder(f, overridesFrom(initOptions.settings)));
          f.ready = job;
          f.lock = job.catch(() => undefined);
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
    .then(() => reconfigure(pushed))
    .catch((e) => connection.console.error(`configuration: ${(e as Error).message}`));
});

connection.onShutdown(async () => {
  await Promise.all([...folders.values()].map((f) => f.live?.stop().catch(() => undefined)));
});

connection.listen();
