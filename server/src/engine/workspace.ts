/**
 * A workspace: the root folder, its config, and the engine's view of it (entries, copy map,
 * statuses). The CLI and the language server both drive the engine through this class. It owns the
 * state (declared together at the top of the class); the disk listing and file keys are in
 * scanner.ts, where each file is on disk in diskPaths.ts, the entries and their statuses in
 * statusBook.ts, when the cache is written in cacheSaver.ts, the reports in workspaceReports.ts, the
 * temporary-file sweep in tempSweep.ts.
 */
import { join } from 'node:path';
import { ADAPTER_CONFIG } from '../layouts/peft';
import { dirName } from '../layouts/fileName';
import { type EngineConfig, STATE_DIR, loadConfig } from './config';
import { type FileEntry, makeEntry, readEntry } from './loraFile';
import type { CopyMap, LoraGroup } from './copyMap';
import { type CachedFile, type FileKey, IndexCache, sameKey } from './indexCache';
import type { FileStatus } from './statusRules';
import { StatusBook, type StatusChange } from './statusBook';
import { CacheSaver } from './cacheSaver';
import { DiskPaths } from './diskPaths';
import { planSync, type PlannedLora, type PlanOptions } from './syncPlanner';
import { executeSync, type SyncOptions, type SyncResult, withoutEntries } from './syncExecutor';
import { History } from './history';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { readEntries } from './entryPool';
import { EntryInterner } from './entryIntern';
import { removeAbandonedLocks } from './loraLock';
import {
  entryKey,
  fileKey,
  fileKeySync,
  KEYS_PER_TURN,
  includedMatcher,
  listCheckpoints,
  racyWindowMs,
  relPath,
  grewWhileRead,
  sideKeyHolds,
  unreadableEntry,
} from './scanner';
import { syncEvents } from './syncEvents';
import { removeStaleTempFiles } from './tempSweep';
import {
  fileReport,
  noSourceHint,
  report,
  type StatusReport,
  type Stats,
  stats,
  type VerifyReport,
  verify,
  verifyEvents,
  type FileReport,
  type ReportSource,
} from './workspaceReports';
import { ensureRealDir } from '../io/realDir';
import { faultClock } from '../io/faults';
import { SyncRecords } from './syncRecords';

export type { FileReport, LoraReport, Stats, StatusReport, VerifyReport } from './workspaceReports';
export { fileKey, relPath };
export type { StatusChange } from './statusBook';
export { cacheSaveDelayMs } from './cacheSaver';

export interface ScanOptions {
  onProgress?: (done: number, total: number) => void;
  /** Asked per file keyed and per batch read: once true, no more of either (nothing removed). */
  cancelled?: () => boolean;
  /** Read on worker threads too (default: when there are enough files to read for it to pay). */
  workers?: boolean;
}

export interface ScanSummary {
  files: number;
  /** Files read (new or changed); the rest came from the cache. */
  read: number;
  reused: number;
  removed: number;
  cacheNote?: string;
  changes: StatusChange[];
  /** Files still being written (growing.ts), left for a later look. */
  waiting?: string[];
  timings: ScanTimings;
}

/**
 * Where a scan's time went, in wall milliseconds, phase by phase (`lora-sync status --timings`, the
 * server's log): listing the files (the cache's load overlaps it), taking each file's key (lstat),
 * reading the new and changed files, the statuses, the cache write.
 */
export interface ScanTimings {
  list: number;
  keys: number;
  read: number;
  statuses: number;
  cache: number;
}

export class Workspace {
  readonly history: History;
  /** What LoRA Sync wrote into copies that cannot carry a record themselves (plain state dicts). */
  readonly records: SyncRecords;
  private readonly cache: IndexCache;
  /** When the cache is written. */
  private readonly saves: CacheSaver;
  /** The entries, their LoRAs and statuses. */
  private readonly book: StatusBook;
  /** Where each file is on disk. */
  private readonly disk: DiskPaths;
  private cacheLoaded = false;
  /** Read and report only (an untrusted workspace): no sync, no cache, no history written. */
  private readOnly = false;
  /** Temporary files the last listing saw (relative); swept by the next sync. */
  private tempsSeen: string[] = [];
  /**
   * Racily clean files (git's term): read while their mtime was within racyWindowMs of the time their
   * key was taken. A file rewritten in place again within the same timestamp tick, with the same size,
   * keeps its (size, mtime, inode) key although its bytes changed; so these keys are not trusted: the
   * next scan or update reads the file again (and the cache saves them with a key no file has).
   * Once read when its mtime is older than that, a file's key is trusted again.
   */
  private readonly racy = new Set<string>();
  /** The include and exclude globs, compiled once (see included). */
  private matchers: ((rel: string) => boolean) | undefined;

  /** From now on nothing is written under this root, not even the engine's own state. */
  setReadOnly(): void {
    this.readOnly = true;
  }

  private constructor(
    readonly root: string,
    readonly cfg: EngineConfig,
  ) {
    this.disk = new DiskPaths(root);
    this.history = new History(root);
    this.records = new SyncRecords(root);
    this.cache = new IndexCache(root, cfg);
    this.saves = new CacheSaver(
      this.cache,
      () => this.cachedFiles(),
      () => this.readOnly,
    );
    this.book = new StatusBook(cfg, this.records, () => this.saves.markDirty());
  }

  static async open(root: string, overrides?: unknown): Promise<Workspace> {
    return new Workspace(root, await loadConfig(root, overrides));
  }

  /** Every checkpoint file under the root that the config includes (links are not followed). */
  async listFiles(): Promise<string[]> {
    return (await this.listRelative()).map((r) => this.disk.ofListed(r));
  }

  /**
   * listFiles, relative to the root as spelled on disk. The same walk notes temporary files a killed
   * write left (`.<name>.lora-sync-tmp-…`, matched by name although dot files are otherwise skipped),
   * so a sync need not walk the workspace again to sweep them.
   */
  private async listRelative(): Promise<string[]> {
    const { files, temps } = await listCheckpoints(this.root, this.cfg);
    this.tempsSeen = temps;
    return files;
  }

  /**
   * Brings the engine up to date with the disk: lists the files, re-reads only those whose
   * (size, mtime ns, inode) changed since the last scan or since the persisted cache, and
   * recomputes statuses. The first scan of a process starts from `.lora-sync/index.jsonl`.
   */
  async scan(opts: ScanOptions = {}): Promise<ScanSummary> {
    // Before any key is taken: the reference for racily clean entries (see `racy`).
    const started = Date.now();
    const clock = phaseClock();
    let cached = new Map<string, CachedFile>();
    let cacheNote: string | undefined;
    // Listing the folders and reading the cache overlap: both wait on the disk.
    const [files, c] = await Promise.all([
      this.listRelative(),
      this.cacheLoaded ? undefined : this.cache.load(),
      this.cacheLoaded ? undefined : this.records.load(),
    ]);
    if (c) {
      cached = c.files;
      cacheNote = c.reason;
      for (const [rel, f] of cached) if (f.divergedAt) this.book.rememberDiverged(rel, f.divergedAt);
      this.cacheLoaded = true;
    }
    const list = clock();
    const seen = new Set<string>();
    const updates: Array<[string, FileEntry | undefined]> = [];
    const toRead: Array<{ abs: string; rel: string; key: FileKey }> = [];
    let keyed = 0;
    for (const onDisk of files) {
      // Keys are taken with synchronous calls: a turn of the event loop every KEYS_PER_TURN files.
      if (++keyed % KEYS_PER_TURN === 0) await nextTurn();
      if (opts.cancelled?.()) break;
      // What relPath(root, abs) gives: the listing's relative path, NFC.
      const rel = /[^\x00-\x7f]/.test(onDisk) ? onDisk.normalize('NFC') : onDisk;
      const abs = this.disk.ofListed(onDisk);
      seen.add(rel);
      const key = fileKeySync(abs);
      if (!key) continue;
      const known = this.book.entries.get(rel) ?? cached.get(rel)?.entry;
      if (known && sameKey(entryKey(known), key) && !this.racy.has(rel) && sideKeyHolds(known, abs)) {
        if (!this.book.entries.has(rel)) updates.push([known.path, known]); // its own path string: one copy of each path in memory
        this.disk.note(rel, abs);
      } else toRead.push({ abs, rel, key });
    }
    const keys = clock();
    let done = files.length - toRead.length;
    // Files read in one scan share their equal parts (an in-sync copy holds its source's tensors).
    const intern = new EntryInterner();
    const results = await readEntries(this.cfg, toRead, {
      useWorkers: opts.workers,
      cancelled: opts.cancelled,
      onBatch: (n) => opts.onProgress?.((done += n), files.length),
      each: (r, f) => {
        if (!r.ok) return r;
        if (r.entry.path === f.rel) r.entry.path = f.rel; // a worker's entry brings its own copy of the string
        // (makeEntry: a worker's entry arrives with the layout a structured clone gives, not ours)
        return { ok: true, entry: intern.entry(makeEntry(r.entry)) };
      },
    });
    // Files still being written are not judged yet, nor files a cancelled scan did not reach: what
    // was known of them stays (a next scan reads them, their keys not matching what is known).
    const growing = new Set<string>();
    let unread = 0;
    toRead.forEach((f, i) => {
      const reached = results[i] !== undefined;
      if (reached && !grewWhileRead(f, this.cfg.settleMs, started)) return;
      reached ? growing.add(f.rel) : unread++;
      const known = this.book.entries.get(f.rel) ?? cached.get(f.rel)?.entry;
      if (known && !this.book.entries.has(f.rel)) updates.push([known.path, known]);
      results[i] = undefined as unknown as (typeof results)[number];
    });
    toRead.forEach((f, i) => {
      const r = results[i];
      if (!r) return;
      const entry = r.ok ? r.entry : unreadableEntry(f.rel, this.cfg, r.code, r.message);
      updates.push([f.rel, entry]);
      this.noteRacy(f.rel, entry, started);
      this.disk.note(f.rel, f.abs);
    });
    const read = toRead.length - growing.size - unread;
    const reading = clock();
    let removed = 0;
    if (!opts.cancelled?.()) {
      for (const rel of this.book.entries.keys())
        if (!seen.has(rel)) {
          updates.push([rel, undefined]);
          this.racy.delete(rel);
          removed++;
        }
    }
    const changes = this.book.apply(updates);
    const statuses = clock();
    if (read || removed || this.saves.isDirty) {
      this.saves.markDirty();
      await this.flushCache();
    }
    return {
      files: files.length - growing.size - unread,
      read,
      reused: files.length - growing.size - unread - read,
      removed,
      cacheNote,
      changes,
      ...(growing.size ? { waiting: [...growing].sort() } : {}),
      timings: { list, keys, read: reading, statuses, cache: clock() },
    };
  }

  /**
   * Re-reads the given files (relative or absolute paths): new, changed, removed or renamed. Only
   * the LoRAs they belonged to and belong to now are recomputed. Returns the status changes.
   * `readBack`: entries already read (a sync's read-back), used while the key is unchanged;
   * `readBackFrom`: the time before which none of them was read.
   */
  async update(
    paths: string[],
    readBack?: ReadonlyMap<string, FileEntry>,
    readBackFrom?: number,
  ): Promise<StatusChange[]> {
    const started = Date.now();
    const updates: Array<[string, FileEntry | undefined]> = [];
    for (const p of new Set(this.withConfigAdapters(paths))) {
      const rel = p.startsWith('/') ? relPath(this.root, p) : p.normalize('NFC');
      const abs = p.startsWith('/') ? p : this.abs(rel);
      const key = await fileKey(abs);
      if (!key || !this.included(rel)) {
        this.disk.forget(rel);
        this.racy.delete(rel);
        if (this.book.entries.has(rel)) updates.push([rel, undefined]);
        continue;
      }
      const known = this.book.entries.get(rel);
      if (known && sameKey(entryKey(known), key) && !this.racy.has(rel) && sideKeyHolds(known, abs)) continue;
      const fresh = readBack?.get(rel);
      const reuse = !!fresh && sameKey(entryKey(fresh), key);
      const entry = reuse ? fresh! : await this.readOne(abs, rel, key);
      updates.push([rel, entry]);
      // An entry read back during a sync was read then, not now (readBackFrom: when the sync's writes began).
      this.noteRacy(rel, entry, reuse && readBackFrom !== undefined ? readBackFrom : started);
      this.disk.note(rel, abs);
    }
    const changes = this.book.apply(updates);
    if (updates.length) this.saves.schedule();
    return changes;
  }

  /**
   * An `adapter_config.json` that changed stands for the adapter files beside it (its keys are their
   * general metadata): they are looked at again, and re-read since their entry's config key no longer holds.
   */
  private withConfigAdapters(paths: string[]): string[] {
    const configs = paths.filter((p) => p === ADAPTER_CONFIG || p.endsWith(`/${ADAPTER_CONFIG}`));
    if (!configs.length) return paths;
    const dirs = new Set(configs.map((p) => dirName(p.startsWith('/') ? relPath(this.root, p) : p.normalize('NFC'))));
    const adapters = [...this.book.entries.values()]
      .filter((e) => e.sideKey && dirs.has(dirName(e.path)))
      .map((e) => e.path);
    return [...paths.filter((p) => !configs.includes(p)), ...adapters];
  }

  private noteRacy(rel: string, e: FileEntry, keyTakenAfter: number): void {
    if (e.mtimeMs >= keyTakenAfter - racyWindowMs(e.mtimeNs)) this.racy.add(rel);
    else this.racy.delete(rel);
  }

  /** Writes the cache now if anything changed since it was last written. */
  async flushCache(): Promise<void> {
    await this.saves.flush();
  }

  private included(rel: string): boolean {
    this.matchers ??= includedMatcher(this.cfg);
    return this.matchers(rel);
  }

  private async readOne(abs: string, rel: string, key?: FileKey): Promise<FileEntry> {
    try {
      return await readEntry(abs, rel, this.cfg, key);
    } catch (e) {
      return unreadableEntry(rel, this.cfg, (e as NodeJS.ErrnoException).code ?? 'IO_ERROR', (e as Error).message);
    }
  }

  /** What the cache saves: every entry, with what is remembered of it (diverged, racily clean). */
  private cachedFiles(): Map<string, CachedFile> {
    const files = new Map<string, CachedFile>();
    for (const [rel, e] of this.book.entries) {
      const divergedAt = this.book.divergedAt(rel);
      files.set(rel, {
        entry: e,
        ...(divergedAt !== undefined ? { divergedAt } : {}),
        ...(this.racy.has(rel) ? { racy: true } : {}),
      });
    }
    return files;
  }

  copyMap(): CopyMap {
    return this.book.copyMap();
  }
  entry(rel: string): FileEntry | undefined {
    return this.book.entries.get(rel);
  }
  /** The entry of a file given by absolute or relative path. */
  entryAt(p: string): FileEntry | undefined {
    return this.book.entries.get(p.startsWith('/') ? relPath(this.root, p) : p.normalize('NFC'));
  }
  status(rel: string): FileStatus | undefined {
    return this.book.statuses.get(rel);
  }
  /** The LoRA a file belongs to (a copy may be tied by its sync record or content, not its own id). */
  groupOf(rel: string): LoraGroup | undefined {
    return this.book.groupOf(rel);
  }
  /** Hints about the whole workspace (no source folder), each to be shown once. */
  hints(): string[] {
    const h = noSourceHint(this.reportSource());
    return h ? [h] : [];
  }
  abs(rel: string): string {
    return this.disk.abs(rel);
  }

  // ---- reports (workspaceReports.ts) ----

  /** What the reports read: this workspace's state, read-only. */
  private reportSource(): ReportSource {
    return {
      root: this.root,
      history: this.history,
      copyMap: () => this.copyMap(),
      entry: (rel) => this.book.entries.get(rel),
      entries: () => this.book.entries.values(),
      fileCount: () => this.book.entries.size,
      status: (rel) => this.book.statuses.get(rel),
      statuses: () => this.book.statuses.values(),
      groupOf: (rel) => this.book.groupOf(rel),
      identifiedBy: (rel) => this.book.identifiedBy(rel),
      cfg: this.cfg,
    };
  }

  fileReport(e: FileEntry): FileReport {
    return fileReport(this.reportSource(), e);
  }
  stats(): Promise<Stats> {
    return stats(this.reportSource());
  }
  report(): Promise<StatusReport> {
    return report(this.reportSource());
  }
  /** The seed's verify_sync_integrity: for one LoRA or all, {is_consistent, issues}. */
  verify(loraIds?: string[]): VerifyReport {
    return verify(this.reportSource(), loraIds);
  }

  plan(opts: PlanOptions = {}): PlannedLora[] {
    return planSync(this.copyMap(), (e) => this.book.statuses.get(e.path)!, opts);
  }

  /** Executes a plan, records one history event per LoRA, and refreshes what was written. */
  async sync(plan: PlannedLora[], opts: SyncOptions): Promise<SyncResult> {
    if (this.readOnly) throw new Error('this workspace is read-only here (not trusted): nothing is written');
    if (!opts.now && faultClock) opts = { ...opts, now: faultClock }; // test seam (io/faults.ts): reproducible bytes
    // Locks and history live there: a state folder that is a link refuses the whole sync, once.
    await ensureRealDir(join(this.root, STATE_DIR));
    await this.removeStaleTempFiles(
      plan.flatMap((l) => l.copies.filter((c) => c.action === 'write' || c.action === 'force').map((c) => c.path)),
    );
    await removeAbandonedLocks(this.root); // a killed sync's locks, even of LoRAs with nothing left to write
    // Copies written from here on are read back from here on: the reference for their racy check.
    const writesFrom = Date.now();
    const res = await executeSync(
      plan,
      {
        root: this.root,
        cfg: this.cfg,
        abs: (r) => this.abs(r),
        entry: (r) => this.book.entries.get(r),
        racy: (r) => this.racy.has(r),
        records: this.records,
      },
      opts,
    );
    const events = syncEvents(res, opts);
    // Copies already written stay written: a history that cannot be appended to is reported, not fatal.
    let historyError: string | undefined;
    if (events.length)
      await this.history.append(events).catch((e: NodeJS.ErrnoException) => {
        historyError = `the history could not be written${e.code === 'ENOSPC' ? ' (no space left on the device)' : ''}: ${e.message}`;
      });
    const written = res.loras.flatMap((l) => l.copies.filter((c) => c.entry).map((c) => c.path));
    // The executor read each copy it wrote back already: those entries stand while the file is untouched.
    const readBack = new Map(
      res.loras.flatMap((l) =>
        l.copies.filter((c) => c.entry && c.outcome === 'synced').map((c) => [c.path, c.entry!] as const),
      ),
    );
    if (written.length) await this.update(written, readBack, writesFrom);
    await this.flushCache();
    const out = withoutEntries(res);
    return historyError ? { ...out, historyError } : out;
  }

  /** Sweeps temporary files of killed writes (tempSweep.ts): near `targets`, or everywhere. */
  removeStaleTempFiles(targets?: readonly string[]): Promise<string[]> {
    return removeStaleTempFiles(
      this.root,
      this.cfg.exclude,
      targets,
      () => this.tempsSeen.map((r) => this.disk.ofListed(r)),
      (r) => this.abs(r),
    );
  }

  /** Records a verify run in the history, one event per LoRA. */
  async recordVerify(v: VerifyReport): Promise<void> {
    if (this.readOnly) return;
    await this.history.append(verifyEvents(v, new Date().toISOString()));
  }
}

export { STATE_DIR };

/** Each call: the wall milliseconds since the call before it (or since the clock was made), to a tenth. */
function phaseClock(): () => number {
  let last = performance.now();
  return () => {
    const now = performance.now();
    const ms = Math.round((now - last) * 10) / 10;
    last = now;
    return ms;
  };
}
