/**
 * The server's state: one Workspace + LiveIndex per workspace folder, the diagnostics sent for each
 * folder's files, and the server status. Request handlers (./requests.ts) and the lifecycle
 * (./server.ts) act on folders only through this host.
 */
import { readFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  type Connection,
  ErrorCodes,
  MessageType,
  ResponseError,
  ShowMessageNotification,
  type WorkDoneProgressReporter,
  type WorkspaceFolder,
  DiagnosticSeverity,
} from 'vscode-languageserver/node';
import { CONFIG_FILE, type EngineConfig } from '../engine/config';
import { type LiveEvent, LiveIndex } from '../engine/liveIndex';
import { type FileReport, type ScanSummary, Workspace } from '../engine/workspace';
import {
  type FolderParams,
  type FolderRef,
  type InitializationOptions,
  SETTING_KEYS,
  type ServerStatus,
  StatusChangedNotification,
} from '../protocol/messages';
import { scanPhasesText } from '../protocol/reports';
import { DIAGNOSTIC_SOURCE, diagnosticsFor } from './diagnostics';

export interface Folder {
  uri: string;
  root: string;
  ws?: Workspace;
  live?: LiveIndex;
  /** The folder cannot be used (invalid lora-sync.json or settings, unreadable root). */
  error?: string;
  /** The watcher failed; the loop fell back to periodic reconciles. */
  watchError?: string;
  /** Settings overrides the current Workspace was opened with, and lora-sync.json's text, to skip needless rebuilds. */
  settingsKey: string;
  /** Diagnostics last sent, by relative path: only files that have some. */
  sent: Map<string, { uri: string; key: string }>;
  /** Request work on this folder runs one job at a time. */
  lock: Promise<unknown>;
  /** Resolves once the folder's current Workspace has done its first scan. */
  ready: Promise<void>;
  /** The settings overrides the current Workspace was opened with (a lora-sync.json edit restarts with them). */
  overrides?: Record<string, unknown>;
  /** The workspace-level hint shown once (no source folder), as last published. */
  hint?: string;
}

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
/** Compile-time check: SETTING_KEYS lists every engine option, so no setting is dropped below. */
export const SETTING_KEYS_COMPLETE: Same<(typeof SETTING_KEYS)[number], keyof EngineConfig> = true;
const KNOWN_KEYS: ReadonlySet<string> = new Set(SETTING_KEYS);

export const folderRef = (f: Folder): FolderRef => ({ uri: f.uri, root: f.root });

export class ServerHost {
  readonly folders = new Map<string, Folder>();
  initOptions: InitializationOptions = {};
  /** The client shows work-done progress the server creates (the first scan's). */
  clientProgress = false;
  /** The client answers `workspace/configuration`. */
  pullConfiguration = false;
  starting = true;
  private busy = 0;
  private lastStatus = '';

  constructor(private readonly connection: Connection) {}

  // ---- server status ---------------------------------------------------------------------------

  serverStatus(): ServerStatus {
    let loras = 0;
    let problems = 0;
    const errors: string[] = [];
    const hints: string[] = [];
    for (const f of this.folders.values()) {
      if (f.hint) hints.push(this.folders.size > 1 ? `${f.root}: ${f.hint}` : f.hint);
      if (f.ws) loras += f.ws.copyMap().loras.size;
      problems += f.sent.size;
      if (f.error) errors.push(f.error);
      else if (f.watchError) errors.push(f.watchError);
    }
    const state = this.starting ? 'starting' : this.busy ? 'working' : errors.length ? 'error' : 'ready';
    return {
      state,
      ...(errors.length ? { message: errors.join('\n') } : {}),
      folders: this.folders.size,
      loras,
      problems,
      ...(hints.length ? { hints } : {}),
    };
  }

  statusChanged(): void {
    const s = this.serverStatus();
    const key = JSON.stringify(s);
    if (key === this.lastStatus) return;
    this.lastStatus = key;
    void this.connection.sendNotification(StatusChangedNotification, s);
  }

  /** Runs a job with the server shown as working. */
  async working<T>(job: () => Promise<T>): Promise<T> {
    this.busy++;
    this.statusChanged();
    try {
      return await job();
    } finally {
      this.busy--;
      this.statusChanged();
    }
  }

  // ---- diagnostics -----------------------------------------------------------------------------

  private publishFile(f: Folder, rel: string, report: FileReport | undefined): void {
    const ws = f.ws;
    const uriOf = (r: string) => pathToFileURL(ws ? ws.abs(r) : `${f.root}/${r}`).toString();
    // With no source folder at all, one hint (publishHint) stands for the orphan of every file.
    const hinted = !!f.hint && report?.status === 'ORPHAN';
    const diagnostics = ws && report && !hinted ? diagnosticsFor(report, ws.status(rel)?.source, uriOf) : [];
    const was = f.sent.get(rel);
    if (!diagnostics.length) {
      if (!was) return;
      f.sent.delete(rel);
      void this.connection.sendDiagnostics({ uri: was.uri, diagnostics: [] });
      return;
    }
    const key = JSON.stringify(diagnostics);
    const uri = uriOf(rel);
    if (was && was.key === key && was.uri === uri) return;
    if (was && was.uri !== uri) void this.connection.sendDiagnostics({ uri: was.uri, diagnostics: [] });
    f.sent.set(rel, { uri, key });
    void this.connection.sendDiagnostics({ uri, diagnostics });
  }

  /** Every file of the folder; files no longer there (or no longer a problem) are cleared. */
  async publishAll(f: Folder): Promise<void> {
    const r = f.ws ? await f.ws.report() : undefined;
    this.publishHint(f, r?.hints?.[0]);
    const files = r ? r.files : [];
    const seen = new Set<string>();
    for (const r of files) {
      seen.add(r.path);
      this.publishFile(f, r.path, r);
    }
    for (const rel of [...f.sent.keys()]) if (!seen.has(rel)) this.publishFile(f, rel, undefined);
    this.statusChanged();
  }

  /**
   * The one diagnostic that says the workspace has no source folder and how to designate one, on
   * `lora-sync.json` (where the fix goes, whether or not the file exists yet); cleared once a source
   * appears. Returns whether the hint changed.
   */
  private publishHint(f: Folder, hint: string | undefined): boolean {
    if (hint === f.hint) return false;
    f.hint = hint;
    const at0 = { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } };
    void this.connection.sendDiagnostics({
      uri: pathToFileURL(join(f.root, CONFIG_FILE)).toString(),
      diagnostics: hint
        ? [
            {
              range: at0,
              severity: DiagnosticSeverity.Warning,
              code: 'NO_SOURCE_FOLDER',
              source: DIAGNOSTIC_SOURCE,
              message: hint,
            },
          ]
        : [],
    });
    return true;
  }

  /** The changed files and every file of the LoRAs they belong to (a source moving on changes its copies' messages). */
  publishChanged(f: Folder, paths: string[]): void {
    const ws = f.ws;
    if (!ws) return;
    // The hint appearing or going changes what every orphan shows: publish them all.
    if (this.publishHint(f, ws.hints()[0])) {
      void this.publishAll(f);
      return;
    }
    const rels = new Set(paths);
    for (const p of paths) {
      const g = ws.groupOf(p);
      if (g) for (const m of [...g.sources, ...g.copies, ...g.broken]) rels.add(m.path);
    }
    for (const rel of rels) {
      const e = ws.entry(rel);
      this.publishFile(f, rel, e ? ws.fileReport(e) : undefined);
    }
    this.statusChanged();
  }

  // ---- folders ---------------------------------------------------------------------------------

  /** Settings → EngineConfig overrides: known keys only (VS Code adds its own), unset values left out. */
  overridesFrom(settings: unknown): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    if (settings && typeof settings === 'object') {
      for (const [k, v] of Object.entries(settings)) if (KNOWN_KEYS.has(k) && v !== null && v !== undefined) out[k] = v;
    }
    // An untrusted workspace is never written to, not even by auto-sync.
    if (this.initOptions.readOnly) out.autoSync = 'off';
    return out;
  }

  private onLive(f: Folder, live: LiveIndex, e: LiveEvent): void {
    if (f.live !== live) return; // an index replaced by a rebuild
    const console = this.connection.console;
    switch (e.kind) {
      case 'statuses':
        this.publishChanged(
          f,
          e.changes.map((c) => c.path),
        );
        break;
      case 'synced': // auto-sync wrote copies: their statuses changed without a `statuses` event
        void this.publishAll(f);
        if (e.result.failed) console.warn(`${f.root}: auto-sync (${e.reason}): ${e.result.failed} copies failed`);
        break;
      case 'watch-error':
        f.watchError = `${f.root}: ${e.message}. ${e.advice}`;
        // Once per folder (the watcher says it once): the log, the status, and a notification the user sees.
        if (e.polling) {
          console.warn(f.watchError);
          // A notification, not window.showWarningMessage: that is a request, and a client that does
          // not answer it rejected a promise nobody awaited, which ended the server (soak suite).
          void this.connection
            .sendNotification(ShowMessageNotification.type, {
              type: MessageType.Warning,
              message: `LoRA Sync: ${f.watchError}`,
            })
            .catch(() => undefined);
        } else console.error(f.watchError);
        this.statusChanged();
        break;
      case 'error':
        console.error(`${f.root}: ${e.message}`);
        break;
      case 'scanned': // the first scan, when startFolder did not run one of its own (a client without progress)
        if (e.full && !this.clientProgress) this.logFirstScan(f, e.summary);
        break;
      default:
        break;
    }
  }

  /** Opens the folder's Workspace (with these settings), runs the first scan, starts the live loop, publishes. */
  private async startFolder(f: Folder, settings: Record<string, unknown>): Promise<void> {
    const old = f.live;
    f.live = undefined;
    await old?.stop().catch(() => undefined);
    f.overrides = settings;
    f.settingsKey = `${JSON.stringify(settings)}\u0000${await readFile(join(f.root, CONFIG_FILE), 'utf8').catch(() => '')}`;
    f.error = undefined;
    f.watchError = undefined;
    let progress: WorkDoneProgressReporter | undefined;
    try {
      const ws = await Workspace.open(f.root, settings);
      if (this.initOptions.readOnly) ws.setReadOnly();
      f.ws = ws;
      if (this.clientProgress) {
        // A scan of our own first, for progress; the live index's first scan is then warm (no file re-read).
        progress = await this.connection.window.createWorkDoneProgress();
        progress.begin('LoRA Sync: scanning', 0, f.root);
        const s = await ws.scan({
          onProgress: (done, total) =>
            progress?.report(total ? Math.round((done / total) * 100) : 100, `${done} / ${total} files`),
        });
        this.logFirstScan(f, s);
      }
      // The server answers messages while it scans: the folder may have been removed meanwhile.
      if (this.folders.get(f.uri) !== f) return;
      const live: LiveIndex = new LiveIndex(ws, (e) => this.onLive(f, live, e), {
        watch: this.initOptions.watch !== false,
        usePolling: this.initOptions.usePolling,
      });
      f.live = live;
      await live.start();
      if (this.folders.get(f.uri) !== f) {
        f.live = undefined;
        await live.stop().catch(() => undefined);
        return;
      }
    } catch (e) {
      f.ws = undefined;
      f.error = `${f.root}: ${(e as Error).message}`;
      this.connection.console.error(f.error);
    } finally {
      progress?.done();
    }
    await this.publishAll(f);
  }

  /** Where a slow start-up went, for a user who opens the log to ask. */
  private logFirstScan(f: Folder, s: ScanSummary): void {
    this.connection.console.info(
      `${f.root}: first scan: ${s.files} files, ${s.read} read, ${s.reused} from the cache; ${scanPhasesText([s.timings])}`,
    );
  }

  /** (Re)starts a folder after the work queued on it; requests wait for it through `ready`. */
  restartFolder(f: Folder, settings: Record<string, unknown>): Promise<void> {
    const job = f.lock.then(() => this.startFolder(f, settings));
    f.ready = job;
    f.lock = job.catch(() => undefined);
    return job;
  }

  /** Runs request work on one folder after what is already running there, once its first scan is done. */
  exclusive<T>(f: Folder, job: (ws: Workspace) => Promise<T>): Promise<T> {
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

  addFolder(wf: WorkspaceFolder): Folder | undefined {
    if (!wf.uri.startsWith('file:')) {
      this.connection.console.warn(`${wf.uri}: only file folders are supported`);
      return undefined;
    }
    const f: Folder = {
      uri: wf.uri,
      root: fileURLToPath(wf.uri),
      settingsKey: '',
      sent: new Map(),
      lock: Promise.resolve(),
      ready: Promise.resolve(),
    };
    this.folders.set(wf.uri, f);
    return f;
  }

  async removeFolder(uri: string): Promise<void> {
    const f = this.folders.get(uri);
    if (!f) return;
    this.folders.delete(uri);
    const live = f.live;
    f.live = undefined;
    f.ws = undefined;
    await live?.stop().catch(() => undefined);
    for (const rel of [...f.sent.keys()]) this.publishFile(f, rel, undefined);
    this.publishHint(f, undefined);
    this.statusChanged();
  }

  /** Settings for each folder: pulled from the client when it can answer, else the pushed object. */
  async reconfigure(pushed: unknown): Promise<void> {
    for (const f of [...this.folders.values()]) {
      let settings: unknown = pushed;
      if (this.pullConfiguration)
        settings = await this.connection.workspace
          .getConfiguration({ scopeUri: f.uri, section: 'loraSync' })
          .catch(() => pushed);
      const o = this.overridesFrom(settings);
      // lora-sync.json is part of the configuration: an edit to it (the client forwards file changes
      // as a configuration change) rebuilds the folder like a settings change does.
      const fileText = await readFile(join(f.root, CONFIG_FILE), 'utf8').catch(() => '');
      const key = `${JSON.stringify(o)}\u0000${fileText}`;
      if (key === f.settingsKey && !f.error) continue;
      await this.working(() => this.restartFolder(f, o));
    }
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.folders.values()].map((f) => f.live?.stop().catch(() => undefined)));
  }

  // ---- which folders a request covers ----------------------------------------------------------

  /** The folders a request covers: the one it names, or all. */
  targets(p: FolderParams | undefined): Folder[] {
    if (p?.folder) {
      const f = this.folders.get(p.folder);
      if (!f) throw new ResponseError(ErrorCodes.InvalidParams, `${p.folder} is not a workspace folder`);
      return [f];
    }
    return [...this.folders.values()];
  }

  /** Each folder that can answer, after its first scan; folders in error are left out. */
  async usable(p: FolderParams | undefined): Promise<Array<{ f: Folder; ws: Workspace }>> {
    const out: Array<{ f: Folder; ws: Workspace }> = [];
    for (const f of this.targets(p)) {
      await f.ready;
      if (f.ws) out.push({ f, ws: f.ws });
    }
    return out;
  }

  /** The workspace folder a file lies in (the innermost, when folders nest). */
  folderOf(abs: string): Folder | undefined {
    let best: Folder | undefined;
    for (const f of this.folders.values()) {
      const inside = abs.startsWith(f.root.endsWith(sep) ? f.root : f.root + sep);
      if (inside && (!best || f.root.length > best.root.length)) best = f;
    }
    return best;
  }
}
