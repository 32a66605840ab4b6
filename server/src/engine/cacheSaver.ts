/**
 * When the index cache (indexCache.ts) is written: at once when a scan flushes it, a moment after
 * incremental updates so that a burst of them costs one write, and never in a read-only workspace.
 * What it holds is the workspace's to say (`files`).
 */
import type { CachedFile, IndexCache } from './indexCache';

export class CacheSaver {
  /** A save is due (markDirty), and its timer. */
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  /** How long the last save took (ms), for the save delay. */
  private lastSaveMs = 0;

  constructor(
    private readonly cache: IndexCache,
    private readonly files: () => Map<string, CachedFile>,
    private readonly readOnly: () => boolean,
  ) {}

  /** Something the cache holds changed: the next flush writes it. */
  markDirty(): void {
    this.dirty = true;
  }

  get isDirty(): boolean {
    return this.dirty;
  }

  /** Incremental updates write the cache a moment later, so a burst of changes costs one write. */
  schedule(): void {
    this.dirty = true;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, cacheSaveDelayMs(this.lastSaveMs));
    this.timer.unref();
  }

  /** Writes the cache now if anything changed since it was last written. */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.dirty || this.readOnly()) return;
    this.dirty = false;
    await this.save();
  }

  private async save(): Promise<void> {
    const files = this.files();
    const t0 = performance.now();
    await this.cache.save(files).catch(() => undefined); // a cache that cannot be written costs speed, never correctness
    this.lastSaveMs = performance.now() - t0;
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
