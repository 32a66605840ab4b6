/**
 * A workspace: the root folder, its config, and the engine's view of it (entries, copy map,
 * statuses). The CLI and the language server both drive the engine through this class.
 */
import { readdir, unlink } from 'node:fs/promises';
import { lstatSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import fg from 'fast-glob';
import { type EngineConfig, STATE_DIR, loadConfig } from './config';
import { type FileEntry, isSourcePath, makeEntry, readEntry } from './loraFile';
import { CopyIndex, type CopyMap, type LoraGroup, primarySource } from './copyMap';
import { type CachedFile, type FileKey, IndexCache, sameKey } from './indexCache';
import micromatch from 'micromatch';
import { describeStatus, type FileStatus, type Issue, SOUND, statusOf, type Status, STATUSES } from './statusRules';
import { planSync, type PlannedLora, type PlanOptions } from './syncPlanner';
import { executeSync, type SyncOptions, type SyncResult, withoutEntries } from './syncExecutor';
import { History, type HistoryEvent } from './history';
import { readEntries } from './entryPool';
import { EntryInterner } from './entryIntern';
import { removeAbandonedLocks } from './loraLock';
import { ownStartTicks, processAlive } from '../io/processIdentity';
import { ensureRealDir } from '../io/realDir';
import { isTempFile, tempFileOwner, TEMP_MARK } from '../io/atomicWrite';
import { faultClock } from '../io/faults';

/**
 * How recent an mtime must be, at the time its key is taken, for the key not to be trusted later: more
 * than the timestamp tick of the file system. Where mtimes have a fraction of a second (ext4, xfs,
 * btrfs: one kernel tick, at most 10 ms; exFAT 10 ms; NTFS 100 ns), 100 ms; where they are whole
 * seconds (FAT's 2 s, HFS+'s 1 s), 3 s. Files written less than this before a read are read again once.
 */
function racyWindowMs(mtimeNs: string): number {
  return mtimeNs.endsWith('000000000') ? 3000 : 100;
}

/** Temporary files of a killed write, anywhere under the root (dot folders excepted, as in scans). */
const TEMP_GLOB = `**/.*${TEMP_MARK}*`;

export interface ScanOptions {
  onProgress?: (done: number, total: number) => void;
  cancelled?: () => boolean;
  /** Read on worker threads too (default: when there are enough files to read for it to pay). */
  workers?: boolean;
}

export interface FileReport {
  path: string;
  role: 'source' | 'copy' | null;
  lora_id: string | null;
  status: Status | 'UNRECOGNIZED';
  message: string;
  issues: Issue[];
}

export interface LoraReport {
  id: string;
  name: string;
  source: string | null;
  sources: string[];
  copies: Array<{ path: string; status: Status }>;
  problems: number;
}

export interface Stats {
  total_loras_tracked: number;
  total_copies_tracked: number;
  total_syncs_performed: number;
  average_copies_per_lora: number;
  files: number;
  unrecognized: number;
  by_status: Record<string, number>;
}

export interface StatusReport {
  root: string;
  stats: Stats;
  loras: LoraReport[];
  files: FileReport[];
}

export interface VerifyReport {
  is_consistent: boolean;
  issues: Issue[];
  loras: Array<{ id: string; name: string; is_consistent: boolean; issues: Issue[] }>;
}

/** A path with no '.', '..' or empty segment and no trailing '/': string prefixes then say what path.relative would. */
const isClean = (p: string) => !/(^|\/)\.{1,2}(\/|$)|\/\/|.\/$/.test(p);
let lastRoot = '';
let lastRootClean = false;

/** Relative path with '/' separators, NFC: how every path is shown and keyed. */
export function relPath(root: string, abs: string): string {
  // Fast path for what listings give (the root joined with a clean relative path): a scan does this per file.
  if (sep === '/' && abs.length > root.length + 1 && abs.charCodeAt(root.length) === 47 && abs.startsWith(root)) {
    if (root !== lastRoot) {
      lastRoot = root;
      lastRootClean = root.startsWith('/') && isClean(root);
    }
    const rest = abs.slice(root.length + 1);
    if (lastRootClean && rest.charCodeAt(0) !== 47 && isClean(rest))
      return /[^\x00-\x7f]/.test(rest) ? rest.normalize('NFC') : rest;
  }
  return relative(root, abs).split(sep).join('/').normalize('NFC');
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
}

export class Workspace {
  readonly history: History;
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
    const listed = await fg([...this.cfg.include, TEMP_GLOB], {
      cwd: this.root,
      ignore: this.cfg.exclude,
      onlyFiles: true,
      followSymbolicLinks: false,
      dot: false,
      suppressErrors: true,
    });
    const files: string[] = [];
    const temps: string[] = [];
    for (const r of listed) (isTempFile(r.slice(r.lastIndexOf('/') + 1)) ? temps : files).push(r);
    this.tempsSeen = temps;
    return files;
  }
  /** Temporary files the last listing saw (relative); swept by the next sync. */
  private tempsSeen: string[] = [];

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
    const [files, c] = await Promise.all([this.listRelative(), this.cacheLoaded ? undefined : this.cache.load()]);
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
      if (known && sameKey(entryKey(known), key) && !this.racy.has(rel)) {
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
    toRead.forEach((f, i) => {
      const r = results[i];
      const entry = r.ok ? r.entry : this.unreadable(f.rel, r.code, r.message);
      updates.push([f.rel, entry]);
      this.noteRacy(f.rel, entry, started);
      this.noteAbs(f.rel, f.abs);
    });
    const read = toRead.length;
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
    return { files: files.length, read, reused: files.length - read, removed, cacheNote, changes };
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
    for (const p of new Set(paths)) {
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
      if (known && sameKey(entryKey(known), key) && !this.racy.has(rel)) continue;
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
   * Racily clean files (git's term): read while their mtime was within racyWindowMs of the time their
   * key was taken. A file rewritten in place again within the same timestamp tick, with the same size,
   * keeps its (size, mtime, inode) key although its bytes changed; so these keys are not trusted: the
   * next scan or update reads the file again (and the cache saves them with a key no file has).
   * Once read when its mtime is older than that, a file's key is trusted again.
   */
  private readonly racy = new Set<string>();

  private noteRacy(rel: string, e: FileEntry, keyTakenAfter: number): void {
    if (e.mtimeMs >= keyTakenAfter - racyWindowMs(e.mtimeNs)) this.racy.add(rel);
    else this.racy.delete(rel);
  }

  private saveTimer: NodeJS.Timeout | undefined;
  private cacheDirty = false;

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
  /** How long the last cache save took (ms), for the save delay. */
  private lastSaveMs = 0;

  /** Writes the cache now if anything changed since it was last written. */
  async flushCache(): Promise<void> {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    if (!this.cacheDirty || this.readOnly) return;
    this.cacheDirty = false;
    await this.saveCache();
  }

  private included(rel: string): boolean {
    // micromatch.isMatch compiles the globs at every call; these are compiled once (matcher takes a
    // list as isMatch does, whatever its typings say).
    this.matchers ??= {
      include: micromatch.matcher(this.cfg.include as unknown as string),
      exclude: micromatch.matcher(this.cfg.exclude as unknown as string),
    };
    return (
      !rel.split('/').some((seg) => seg.startsWith('.')) && this.matchers.include(rel) && !this.matchers.exclude(rel)
    );
  }
  private matchers: { include: (s: string) => boolean; exclude: (s: string) => boolean } | undefined;

  private async readOne(abs: string, rel: string, key?: FileKey): Promise<FileEntry> {
    try {
      return await readEntry(abs, rel, this.cfg, key);
    } catch (e) {
      return this.unreadable(rel, (e as NodeJS.ErrnoException).code ?? 'IO_ERROR', (e as Error).message);
    }
  }

  /** A file that vanished or cannot be opened (permissions): reported, never a reason to stop. */
  private unreadable(rel: string, code: string, message: string): FileEntry {
    return makeEntry({
      path: rel,
      size: 0,
      mtimeMs: 0,
      mtimeNs: '0',
      ino: 0,
      kind: 'corrupt',
      role: isSourcePath(rel, this.cfg) ? 'source' : 'copy',
      unsafeGlobals: [],
      tensors: [],
      tensorsDigest: '',
      metaDigest: '',
      metaKeys: {},
      copyKeys: [],
      syncInfo: {},
      error: { code, message },
    });
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
  private computeStatus(e: FileEntry, g: LoraGroup | undefined): FileStatus {
    const s = statusOf(e, g);
    if (e.role !== 'copy' || e.kind !== 'lora') return s;
    const seen = this.diverged.get(e.path);
    if (s.status === 'STALE' && !e.syncInfo.engine && seen === e.tensorsDigest) {
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
  /** The root is absolute with no '.', '..' or empty segment (see noteAbs). */
  private readonly rootClean: boolean;

  private sourceEntry(rel: string): FileEntry | undefined {
    const s = this.statuses.get(rel)?.source;
    return s ? this.entries.get(s) : undefined;
  }

  fileReport(e: FileEntry): FileReport {
    const s = this.statuses.get(e.path);
    if (!s)
      return {
        path: e.path,
        role: null,
        lora_id: null,
        status: 'UNRECOGNIZED',
        message: `not a LoRA checkpoint${e.error ? `: ${e.error.message}` : ''}; left alone`,
        issues: [],
      };
    // An unreadable file has no id of its own: it belongs to the LoRA its name attached it to.
    return {
      path: e.path,
      role: e.role ?? null,
      lora_id: e.loraId ?? this.index.groupOf(e.path)?.id ?? null,
      status: s.status,
      message: describeStatus(e, s, this.sourceEntry(e.path)),
      issues: s.issues,
    };
  }

  async stats(): Promise<Stats> {
    const by: Record<string, number> = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    for (const s of this.statuses.values()) by[s.status]++;
    const map = this.copyMap();
    const loras = map.loras.size;
    const copies = [...map.loras.values()].reduce(
      (n, g) => n + g.copies.length + g.broken.filter((b) => b.role === 'copy').length,
      0,
    );
    const { events } = await this.history.read();
    return {
      total_loras_tracked: loras,
      total_copies_tracked: copies,
      total_syncs_performed: events.filter((e) => e.event === 'SYNC' && (e.synced_copies ?? 0) > 0).length,
      average_copies_per_lora: loras ? Math.round((copies / loras) * 100) / 100 : 0,
      files: this.entries.size,
      unrecognized: map.unrecognized.length,
      by_status: by,
    };
  }

  async report(): Promise<StatusReport> {
    const loras: LoraReport[] = [...this.copyMap().loras.values()].map((g) => {
      const files = [...g.sources, ...g.copies, ...g.broken];
      const copies = [...g.copies, ...g.broken.filter((b) => b.role === 'copy')].sort((a, b) =>
        a.path < b.path ? -1 : 1,
      );
      return {
        id: g.id,
        name: g.name,
        source: primarySource(g)?.path ?? null,
        sources: g.sources.map((s) => s.path),
        copies: copies.map((c) => ({ path: c.path, status: this.statuses.get(c.path)!.status })),
        problems: files.filter((f) => !SOUND.has(this.statuses.get(f.path)!.status)).length,
      };
    });
    const files = [...this.entries.values()]
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
      .map((e) => this.fileReport(e));
    return { root: this.root, stats: await this.stats(), loras, files };
  }

  /** The seed's verify_sync_integrity: for one LoRA or all, {is_consistent, issues}. */
  verify(loraIds?: string[]): VerifyReport {
    const out: VerifyReport['loras'] = [];
    for (const g of this.copyMap().loras.values()) {
      if (loraIds && !loraIds.includes(g.id)) continue;
      const issues = [...g.sources, ...g.copies, ...g.broken].flatMap((f) => {
        const s = this.statuses.get(f.path)!;
        if (SOUND.has(s.status)) return [];
        return s.issues.length ? s.issues : [{ type: 'PARAM_MISMATCH' as const, file: f.path, detail: s.status }];
      });
      out.push({ id: g.id, name: g.name, is_consistent: issues.length === 0, issues });
    }
    return { is_consistent: out.every((l) => l.is_consistent), issues: out.flatMap((l) => l.issues), loras: out };
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
      },
      opts,
    );
    const time = (opts.now ?? (() => new Date()))().toISOString();
    const events: HistoryEvent[] = [];
    for (const l of res.loras) {
      const acted = l.copies.filter((c) => c.outcome === 'synced' || c.outcome === 'failed');
      if (!acted.length && !l.copies.some((c) => c.outcome === 'skipped' && c.reason !== 'already in sync')) continue;
      const failed = l.copies.filter((c) => c.outcome === 'failed');
      events.push({
        time,
        event: 'SYNC',
        lora_id: l.id,
        name: l.name,
        match_idx: opts.match,
        reason: opts.reason,
        synced_copies: l.copies.filter((c) => c.outcome === 'synced').length,
        failed_copies: failed.length,
        skipped_copies: l.copies.filter((c) => c.outcome === 'skipped' || c.outcome === 'refused').length,
        total_copies: l.copies.length,
        ...(failed.length
          ? {
              files: failed.map((f) => f.path),
              details: { failures: Object.fromEntries(failed.map((f) => [f.path, f.reason])) },
            }
          : {}),
      });
      for (const c of l.copies) {
        if (c.backup && c.outcome === 'synced')
          events.push({
            time,
            event: 'FORCE_OVERWRITE',
            lora_id: l.id,
            name: l.name,
            reason: opts.reason,
            files: [c.path],
            backup: c.backup,
          });
      }
    }
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

  /**
   * Temporary files left by a write that was killed: `.<name>.lora-sync-tmp-<pid>-<rand>`. Removed
   * when the process that made them is gone (a live one may still be writing). Looked for in the
   * folders of `targets` (the copies a sync is about to write), in what the last listing saw, and in
   * the state folder; with no targets, in the whole workspace.
   */
  async removeStaleTempFiles(targets?: readonly string[]): Promise<string[]> {
    let temps: string[];
    if (!targets) {
      temps = await fg(TEMP_GLOB, {
        cwd: this.root,
        ignore: this.cfg.exclude,
        dot: false,
        absolute: true,
        onlyFiles: true,
        followSymbolicLinks: false,
        suppressErrors: true,
      });
    } else {
      const found = new Set(this.tempsSeen.map((r) => this.absOfListed(r)));
      for (const dir of new Set(targets.map((r) => dirname(this.abs(r))))) {
        for (const name of await readdir(dir).catch(() => [] as string[]))
          if (isTempFile(name)) found.add(join(dir, name));
      }
      temps = [...found];
    }
    // The engine's own state folder is excluded from scans, but its cache is written the same way.
    const state = join(this.root, STATE_DIR);
    for (const name of await readdir(state).catch(() => [] as string[]))
      if (isTempFile(name)) temps.push(join(state, name));
    const removed: string[] = [];
    for (const t of temps) {
      const name = basename(t);
      if (!isTempFile(name)) continue;
      const owner = tempFileOwner(name);
      if (owner && owner.pid === process.pid && (owner.start === undefined || owner.start === ownStartTicks()))
        continue; // ours, being written
      if (owner && owner.pid !== process.pid && processAlive(owner.pid, owner.start)) continue;
      // Reported only when it was there and is gone (the listing that saw it may be old).
      if (
        await unlink(t).then(
          () => true,
          () => false,
        )
      )
        removed.push(relPath(this.root, t));
    }
    return removed;
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

/** The key an entry was read with. */
function entryKey(e: FileEntry): FileKey {
  return { size: e.size, mtimeNs: e.mtimeNs, ino: e.ino };
}

/** (size, mtime in ns, inode) of a regular file; undefined when it is gone or not a file. Links are not followed. */
export async function fileKey(abs: string): Promise<FileKey | undefined> {
  return fileKeySync(abs);
}

function fileKeySync(abs: string): FileKey | undefined {
  try {
    // Synchronous: microseconds, where an asynchronous lstat waits on the thread pool.
    const st = lstatSync(abs, { bigint: true });
    if (!st.isFile()) return undefined;
    return { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ino: Number(st.ino) };
  } catch {
    return undefined;
  }
}

export { STATE_DIR };
