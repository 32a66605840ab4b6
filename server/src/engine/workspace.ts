/**
 * A workspace: the root folder, its config, and the engine's view of it (entries, copy map,
 * statuses). The CLI and the language server both drive the engine through this class. It owns the
 * state (declared together at the top of the class); the disk listing and file keys are in
 * scanner.ts, the reports in workspaceReports.ts, the temporary-file sweep in tempSweep.ts.
 */
import { join, resolve } from 'node:path';
import { ADAPTER_CONFIG } from '../layouts/peft';
import { dirName } from '../layouts/fileName';
import { type EngineConfig, STATE_DIR, loadConfig } from './config';
import { type FileEntry, isSourcePath, makeEntry, readEntry } from './loraFile';
import { CopyIndex, type CopyMap, type LoraGroup } from './copyMap';
import { type CachedFile, type FileKey, IndexCache, sameKey } from './indexCache';
import { type FileStatus, statusOf, type Status } from './statusRules';
import { planSync, type PlannedLora, type PlanOptions } from './syncPlanner';
import { executeSync, type SyncOptions, type SyncResult, withoutEntries } from './syncExecutor';
import { History } from './history';
import { readEntries } from './entryPool';
import { EntryInterner } from './entryIntern';
import { removeAbandonedLocks } from './loraLock';
import {
  entryKey,
  fileKey,
  fileKeySync,
  includedMatcher,
  isClean,
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
  type FileReport,
  type ReportSource,
} from './workspaceReports';
import { ensureRealDir } from '../io/realDir';
import { faultClock } from '../io/faults';
import { SyncRecords } from './syncRecords';

export type { FileReport, LoraReport, Stats, StatusReport, VerifyReport } from './workspaceReports';
export { fileKey, relPath };

export interface ScanOptions {
  onProgress?: (done: number, total: number) => void;
  cancelled?: () => boolean;
  /** Read on worker threads too (default: when there are enough files to read for it to pay). */
  workers?: boolean;
}

/** A file whose status changed (before undefined: new file; after undefined: gone or not a LoRA file any more). */
export interface StatusChange {
  path: string;
  before?: Status | 'UNRECOGNIZED';
  after?: Status | 'UNRECOGNIZED';
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
}

export class Workspace {
  readonly history: History;
  /** What LoRA Sync wrote into copies that cannot carry a record themselves (plain state dicts). */
  readonly records: SyncRecords;
  private readonly cache: IndexCache;
  private entries = new Map<string, FileEntry>();
  private absOf = new Map<string, string>();
  private index: CopyIndex;
  private statuses = new Map<string, FileStatus>();
  private cacheLoaded = false;
  /**
   * Copies seen DIVERGED (or structurally different) without our own sync record, with the tensors
   * digest they had then. Match numbers alone would call such a copy STALE as soon as the trainer
   * moves the source on, and a sync would then overwrite the copy's own work: while its tensors are
   * unchanged, it stays DIVERGED. Persisted with the cache.
   */
  private diverged = new Map<string, string>();
  private snapshotCache: CopyMap | undefined;

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
  /** A cache save is due (scheduleCacheSave), and its timer. */
  private cacheDirty = false;
  private saveTimer: NodeJS.Timeout | undefined;
  /** How long the last cache save took (ms), for the save delay. */
  private lastSaveMs = 0;
  /** The include and exclude globs, compiled once (see included). */
  private matchers: ((rel: string) => boolean) | undefined;
  /** The root is absolute with no '.', '..' or empty segment (see noteAbs). */
  private readonly rootClean: boolean;

  /** From now on nothing is written under this root, not even the engine's own state. */
  setReadOnly(): void {
    this.readOnly = true;
  }

  private constructor(
    readonly root: string,
    readonly cfg: EngineConfig,
  ) {
    this.rootClean = root.length > 1 && root.startsWith('/') && isClean(root);
    this.history = new History(root);
    this.records = new SyncRecords(root);
    this.cache = new IndexCache(root, cfg);
    this.index = new CopyIndex((p) => isSourcePath(p, cfg));
  }

  static async open(root: string, overrides?: unknown): Promise<Workspace> {
    return new Workspace(root, await loadConfig(root, overrides));
  }

  /** Every checkpoint file under the root that the config includes (links are not followed). */
  async listFiles(): Promise<string[]> {
    return (await this.listRelative()).map((r) => this.absOfListed(r));
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

  /** Where a listed file is: what the listing's own `absolute` option gave (path.resolve), without a resolve per file. */
  private absOfListed(onDisk: string): string {
    return this.rootClean ? `${this.root}/${onDisk}` : resolve(this.root, onDisk);
  }

  /**
   * Brings the engine up to date with the disk: lists the files, re-reads only those whose
   * (size, mtime ns, inode) changed since the last scan or since the persisted cache, and
   * recomputes statuses. The first scan of a process starts from `.lora-sync/index.json`.
   */
  async scan(opts: ScanOptions = {}): Promise<ScanSummary> {
    // Before any key is taken: the reference for racily clean entries (see `racy`).
    const started = Date.now();
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
      for (const [rel, f] of cached) if (f.divergedAt) this.diverged.set(rel, f.divergedAt);
      this.cacheLoaded = true;
    }
    const seen = new Set<string>();
    const updates: Array<[string, FileEntry | undefined]> = [];
    const toRead: Array<{ abs: string; rel: string; key: FileKey }> = [];
    for (const onDisk of files) {
      if (opts.cancelled?.()) break;
      // What relPath(root, abs) gives: the listing's relative path, NFC.
      const rel = /[^\x00-\x7f]/.test(onDisk) ? onDisk.normalize('NFC') : onDisk;
      const abs = this.absOfListed(onDisk);
      seen.add(rel);
      const key = fileKeySync(abs);
      if (!key) continue;
      const known = this.entries.get(rel) ?? cached.get(rel)?.entry;
      if (known && sameKey(entryKey(known), key) && !this.racy.has(rel) && sideKeyHolds(known, abs)) {
        if (!this.entries.has(rel)) updates.push([known.path, known]); // its own path string: one copy of each path in memory
        this.noteAbs(rel, abs);
      } else toRead.push({ abs, rel, key });
    }
    let done = files.length - toRead.length;
    // Files read in one scan share their equal parts (an in-sync copy holds its source's tensors).
    const intern = new EntryInterner();
    const results = await readEntries(this.cfg, toRead, {
      useWorkers: opts.workers,
      onBatch: (n) => opts.onProgress?.((done += n), files.length),
      each: (r, f) => {
        if (!r.ok) return r;
        if (r.entry.path === f.rel) r.entry.path = f.rel; // a worker's entry brings its own copy of the string
        // (makeEntry: a worker's entry arrives with the layout a structured clone gives, not ours)
        return { ok: true, entry: intern.entry(makeEntry(r.entry)) };
      },
    });
    // Files still being written are not judged yet: what was known of them stays.
    const growing = new Set<string>();
    toRead.forEach((f, i) => {
      if (!grewWhileRead(f, this.cfg.settleMs, started)) return;
      growing.add(f.rel);
      const known = this.entries.get(f.rel) ?? cached.get(f.rel)?.entry;
      if (known && !this.entries.has(f.rel)) updates.push([known.path, known]);
      results[i] = undefined as unknown as (typeof results)[number];
    });
    toRead.forEach((f, i) => {
      const r = results[i];
      if (!r) return;
      const entry = r.ok ? r.entry : unreadableEntry(f.rel, this.cfg, r.code, r.message);
      updates.push([f.rel, entry]);
      this.noteRacy(f.rel, entry, started);
      this.noteAbs(f.rel, f.abs);
    });
    const read = toRead.length - growing.size;
    let removed = 0;
    if (!opts.cancelled?.()) {
      for (const rel of this.entries.keys())
        if (!seen.has(rel)) {
          updates.push([rel, undefined]);
          this.racy.delete(rel);
          removed++;
        }
    }
    const changes = this.apply(updates);
    if (read || removed || this.cacheDirty) {
      this.cacheDirty = true;
      await this.flushCache();
    }
    return {
      files: files.length - growing.size,
      read,
      reused: files.length - growing.size - read,
      removed,
      cacheNote,
      changes,
      ...(growing.size ? { waiting: [...growing].sort() } : {}),
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
        this.absOf.delete(rel);
        this.racy.delete(rel);
        if (this.entries.has(rel)) updates.push([rel, undefined]);
        continue;
      }
      const known = this.entries.get(rel);
      if (known && sameKey(entryKey(known), key) && !this.racy.has(rel) && sideKeyHolds(known, abs)) continue;
      const fresh = readBack?.get(rel);
      const reuse = !!fresh && sameKey(entryKey(fresh), key);
      const entry = reuse ? fresh! : await this.readOne(abs, rel, key);
      updates.push([rel, entry]);
      // An entry read back during a sync was read then, not now (readBackFrom: when the sync's writes began).
      this.noteRacy(rel, entry, reuse && readBackFrom !== undefined ? readBackFrom : started);
      this.noteAbs(rel, abs);
    }
    const changes = this.apply(updates);
    if (updates.length) this.scheduleCacheSave();
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
    const adapters = [...this.entries.values()]
      .filter((e) => e.sideKey && dirs.has(dirName(e.path)))
      .map((e) => e.path);
    return [...paths.filter((p) => !configs.includes(p)), ...adapters];
  }

  private noteRacy(rel: string, e: FileEntry, keyTakenAfter: number): void {
    if (e.mtimeMs >= keyTakenAfter - racyWindowMs(e.mtimeNs)) this.racy.add(rel);
    else this.racy.delete(rel);
  }

  /** Incremental updates write the cache a moment later, so a burst of changes costs one write. */
  private scheduleCacheSave(): void {
    this.cacheDirty = true;
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.flushCache();
    }, cacheSaveDelayMs(this.lastSaveMs));
    this.saveTimer.unref();
  }

  /** Writes the cache now if anything changed since it was last written. */
  async flushCache(): Promise<void> {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    if (!this.cacheDirty || this.readOnly) return;
    this.cacheDirty = false;
    await this.saveCache();
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

  /** Applies new entries (undefined = gone) and recomputes the statuses of the LoRAs they touch. */
  private apply(updates: Array<[string, FileEntry | undefined]>): StatusChange[] {
    if (!updates.length) return [];
    this.snapshotCache = undefined;
    const before = new Map<string, Status | 'UNRECOGNIZED' | undefined>();
    const touched = new Set<LoraGroup>();
    const loose = new Set<string>();
    const note = (p: string) => {
      if (!before.has(p)) before.set(p, this.statusName(p));
    };
    // Readable LoRA files first, so unreadable ones can find the LoRA their name points at.
    updates.sort((a, b) => Number(!(a[1]?.kind === 'lora')) - Number(!(b[1]?.kind === 'lora')));
    for (const [rel, e] of updates) {
      const old = this.index.groupOf(rel);
      if (old) for (const f of [...old.sources, ...old.copies, ...old.broken]) note(f.path);
      note(rel);
      loose.add(rel);
      if (e) {
        this.entries.set(rel, e);
        for (const g of this.index.add(e)) touched.add(g);
      } else {
        this.entries.delete(rel);
        this.statuses.delete(rel);
        for (const g of this.index.remove(rel)) touched.add(g);
      }
    }
    for (const g of touched) {
      for (const f of [...g.sources, ...g.copies, ...g.broken]) note(f.path);
      for (const f of [...g.sources, ...g.copies, ...g.broken]) this.statuses.set(f.path, this.computeStatus(f, g));
    }
    for (const rel of loose) {
      const e = this.entries.get(rel);
      if (!e) {
        this.diverged.delete(rel);
        continue;
      }
      const g = this.index.groupOf(rel);
      if (e.kind === 'unrecognized') this.statuses.delete(rel);
      else if (!g || !touched.has(g)) this.statuses.set(rel, this.computeStatus(e, g)); // a touched group's files are done
    }
    // Files of groups that lost their last readable member are now loose (unattached) too.
    for (const [p] of before) {
      const e = this.entries.get(p);
      if (e && !this.index.groupOf(p) && e.kind !== 'unrecognized')
        this.statuses.set(p, this.computeStatus(e, undefined));
    }
    const changes: StatusChange[] = [];
    for (const [p, was] of before) {
      const now = this.statusName(p);
      if (was !== now) changes.push({ path: p, before: was, after: now });
    }
    return changes.sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  /** The status rules, plus what this workspace remembers of copies that diverged (see `diverged`). */
  private computeStatus(entry: FileEntry, g: LoraGroup | undefined): FileStatus {
    const e = this.withRecord(entry);
    const candidates = this.index.contentCandidates(e.path);
    const s = statusOf(e, g, candidates ? { candidates } : {});
    if (e.role !== 'copy' || e.kind !== 'lora') return s;
    const seen = this.diverged.get(e.path);
    // (A copy equal to an earlier version of its source (`note`) is known stale, whatever it was before.)
    if (s.status === 'STALE' && !e.syncInfo.engine && !s.note && seen === e.tensorsDigest) {
      return {
        ...s,
        status: 'DIVERGED',
        issues: [
          {
            type: 'CHANGED_SINCE_SYNC',
            file: e.path,
            detail: 'this copy had changed on its own before the source moved on; a sync would overwrite that work',
          },
          ...s.issues,
        ],
      };
    }
    const was = this.diverged.get(e.path);
    if (
      s.status === 'DIVERGED' ||
      s.status === 'PARAM_COUNT_MISMATCH' ||
      s.status === 'SHAPE_MISMATCH' ||
      s.status === 'DTYPE_MISMATCH'
    )
      this.diverged.set(e.path, e.tensorsDigest);
    else this.diverged.delete(e.path);
    if (was !== this.diverged.get(e.path)) this.cacheDirty = true; // remembered with the cache
    return s;
  }

  /** A copy without a record of its own (a plain state dict) judged with the one kept for it under .lora-sync/synced. */
  private withRecord(e: FileEntry): FileEntry {
    if (e.role !== 'copy' || e.kind !== 'lora' || e.syncInfo.engine) return e;
    const r = this.records.recordOf(e.path);
    return r ? { ...e, syncInfo: { ...e.syncInfo, engine: { tensors: r.tensors, alg: r.alg, source: r.source } } } : e;
  }

  private statusName(p: string): Status | 'UNRECOGNIZED' | undefined {
    const e = this.entries.get(p);
    if (!e) return undefined;
    if (e.kind === 'unrecognized') return 'UNRECOGNIZED';
    return this.statuses.get(p)?.status;
  }

  private async saveCache(): Promise<void> {
    const files = new Map<string, CachedFile>();
    for (const [rel, e] of this.entries)
      files.set(rel, {
        entry: e,
        ...(this.diverged.has(rel) ? { divergedAt: this.diverged.get(rel) } : {}),
        ...(this.racy.has(rel) ? { racy: true } : {}),
      });
    const t0 = performance.now();
    await this.cache.save(files).catch(() => undefined); // a cache that cannot be written costs speed, never correctness
    this.lastSaveMs = performance.now() - t0;
  }

  copyMap(): CopyMap {
    return (this.snapshotCache ??= this.index.snapshot());
  }
  entry(rel: string): FileEntry | undefined {
    return this.entries.get(rel);
  }
  /** The entry of a file given by absolute or relative path. */
  entryAt(p: string): FileEntry | undefined {
    return this.entries.get(p.startsWith('/') ? relPath(this.root, p) : p.normalize('NFC'));
  }
  status(rel: string): FileStatus | undefined {
    return this.statuses.get(rel);
  }
  /** The LoRA a file belongs to (a copy may be tied by its sync record or content, not its own id). */
  groupOf(rel: string): LoraGroup | undefined {
    return this.index.groupOf(rel);
  }
  /** Hints about the whole workspace (no source folder), each to be shown once. */
  hints(): string[] {
    const h = noSourceHint(this.reportSource());
    return h ? [h] : [];
  }
  abs(rel: string): string {
    return this.absOf.get(rel) ?? join(this.root, rel);
  }

  /** Only paths whose on-disk spelling differs from the NFC one (an NFD folder) are remembered. */
  private noteAbs(rel: string, abs: string): void {
    // root + '/' + rel is what join gives when both are clean (the usual case: no join per file).
    const joined = this.rootClean && abs === `${this.root}/${rel}` && isClean(rel) ? abs : join(this.root, rel);
    if (abs === joined) this.absOf.delete(rel);
    else this.absOf.set(rel, abs);
  }

  // ---- reports (workspaceReports.ts) ----

  /** What the reports read: this workspace's state, read-only. */
  private reportSource(): ReportSource {
    return {
      root: this.root,
      history: this.history,
      copyMap: () => this.copyMap(),
      entry: (rel) => this.entries.get(rel),
      entries: () => this.entries.values(),
      fileCount: () => this.entries.size,
      status: (rel) => this.statuses.get(rel),
      statuses: () => this.statuses.values(),
      groupOf: (rel) => this.index.groupOf(rel),
      identifiedBy: (rel) => this.index.identifiedBy(rel),
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
    return planSync(this.copyMap(), (e) => this.statuses.get(e.path)!, opts);
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
        entry: (r) => this.entries.get(r),
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
      () => this.tempsSeen.map((r) => this.absOfListed(r)),
      (r) => this.abs(r),
    );
  }

  /** Records a verify run in the history, one event per LoRA. */
  async recordVerify(v: VerifyReport): Promise<void> {
    if (this.readOnly) return;
    const time = new Date().toISOString();
    await this.history.append(
      v.loras.map((l) => ({
        time,
        event: 'VERIFY' as const,
        lora_id: l.id,
        name: l.name,
        consistent: l.is_consistent,
        files: [...new Set(l.issues.map((i) => i.file))],
      })),
    );
  }
}

/**
 * How long after an update the cache is saved, given how long the last save took. The cache is
 * rewritten whole (~60 ms at 6,000 files, ~10x that at 60,000): under a steady stream of updates it is
 * saved at most ~5 % of the time, within 2 s when saves are cheap, and at least once a minute. A crash
 * loses only speed: files whose entries were not saved are read again at the next start.
 */
export function cacheSaveDelayMs(lastSaveMs: number): number {
  return Math.min(60_000, Math.max(2000, 20 * lastSaveMs));
}

export { STATE_DIR };
