/**
 * The workspace's book of files: every entry, grouped by LoRA (copyMap.ts), with its status
 * (statusRules.ts). It changes a batch at a time: apply() takes new and gone entries, recomputes only
 * the LoRAs they belonged to and belong to now, and returns the exact status changes. It also keeps
 * what the status rules alone cannot know: the copies that diverged, and (syncRecords.ts) the sync
 * records of copies that cannot carry one.
 */
import type { EngineConfig } from './config';
import { CopyIndex, type CopyMap, type IdentifiedBy, type LoraGroup } from './copyMap';
import { type FileEntry, isSourcePath } from './loraFile';
import { type FileStatus, statusOf, type Status } from './statusRules';
import type { SyncRecords } from './syncRecords';

/** A file whose status changed (before undefined: new file; after undefined: gone or not a LoRA file any more). */
export interface StatusChange {
  path: string;
  before?: Status | 'UNRECOGNIZED';
  after?: Status | 'UNRECOGNIZED';
}

export class StatusBook {
  private readonly entryMap = new Map<string, FileEntry>();
  private readonly statusMap = new Map<string, FileStatus>();
  /** Every file's entry by relative path (changed only by apply). */
  readonly entries: ReadonlyMap<string, FileEntry> = this.entryMap;
  /** The status of every file but unrecognized ones (changed only by apply). */
  readonly statuses: ReadonlyMap<string, FileStatus> = this.statusMap;
  private readonly index: CopyIndex;
  /**
   * Copies seen DIVERGED (or structurally different) without our own sync record, with the tensors
   * digest they had then. Match numbers alone would call such a copy STALE as soon as the trainer
   * moves the source on, and a sync would then overwrite the copy's own work: while its tensors are
   * unchanged, it stays DIVERGED. Persisted with the cache (rememberDiverged, divergedAt).
   */
  private readonly diverged = new Map<string, string>();
  private snapshotCache: CopyMap | undefined;

  /** `onMemoryChange`: what the book remembers of diverged copies changed (it is saved with the cache). */
  constructor(
    cfg: EngineConfig,
    private readonly records: SyncRecords,
    private readonly onMemoryChange: () => void,
  ) {
    this.index = new CopyIndex((p) => isSourcePath(p, cfg));
  }

  /** A diverged copy as the cache remembers it (see `diverged`). */
  rememberDiverged(rel: string, tensorsDigest: string): void {
    this.diverged.set(rel, tensorsDigest);
  }
  /** What is remembered of a diverged copy, for the cache. */
  divergedAt(rel: string): string | undefined {
    return this.diverged.get(rel);
  }

  copyMap(): CopyMap {
    return (this.snapshotCache ??= this.index.snapshot());
  }
  /** The LoRA a file belongs to (a copy may be tied by its sync record or content, not its own id). */
  groupOf(rel: string): LoraGroup | undefined {
    return this.index.groupOf(rel);
  }
  /** How a copy was tied to its LoRA, when not by its own id (copyMap.ts). */
  identifiedBy(rel: string): IdentifiedBy | undefined {
    return this.index.identifiedBy(rel);
  }

  /** Applies new entries (undefined = gone) and recomputes the statuses of the LoRAs they touch. */
  apply(updates: Array<[string, FileEntry | undefined]>): StatusChange[] {
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
        this.entryMap.set(rel, e);
        for (const g of this.index.add(e)) touched.add(g);
      } else {
        this.entryMap.delete(rel);
        this.statusMap.delete(rel);
        for (const g of this.index.remove(rel)) touched.add(g);
      }
    }
    for (const g of touched) {
      for (const f of [...g.sources, ...g.copies, ...g.broken]) note(f.path);
      for (const f of [...g.sources, ...g.copies, ...g.broken]) this.statusMap.set(f.path, this.computeStatus(f, g));
    }
    for (const rel of loose) {
      const e = this.entries.get(rel);
      if (!e) {
        this.diverged.delete(rel);
        continue;
      }
      const g = this.index.groupOf(rel);
      if (e.kind === 'unrecognized') this.statusMap.delete(rel);
      else if (!g || !touched.has(g)) this.statusMap.set(rel, this.computeStatus(e, g)); // a touched group's files are done
    }
    // Files of groups that lost their last readable member are now loose (unattached) too.
    for (const [p] of before) {
      const e = this.entries.get(p);
      if (e && !this.index.groupOf(p) && e.kind !== 'unrecognized')
        this.statusMap.set(p, this.computeStatus(e, undefined));
    }
    const changes: StatusChange[] = [];
    for (const [p, was] of before) {
      const now = this.statusName(p);
      if (was !== now) changes.push({ path: p, before: was, after: now });
    }
    return changes.sort((a, b) => (a.path < b.path ? -1 : 1));
  }

  /** The status rules, plus what the book remembers of copies that diverged (see `diverged`). */
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
    if (was !== this.diverged.get(e.path)) this.onMemoryChange(); // remembered with the cache
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
    return this.statusMap.get(p)?.status;
  }
}
