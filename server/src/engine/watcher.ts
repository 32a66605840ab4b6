/**
 * Watches a workspace for checkpoint files that appear, change or disappear, and reports them in
 * batches once each file has finished being written.
 *
 * - chokidar 5 has no globs, so the whole root is watched and paths are filtered here with the
 *   scanner's rules (fast-glob, dot:false): a path with any segment starting with '.' is never
 *   reported, and dot folders are not even watched. That also hides our own temporary files
 *   (`.<name>.lora-sync-tmp-…`) and `.git` / `.lora-sync`.
 * - Excluded folders (plus `node_modules`) are not watched at all; non-matching files are ignored.
 * - A file is reported only after its size and mtime held still for `settleMs` (our own stat
 *   polling, because chokidar's awaitWriteFinish looks at the size only, and a retrained LoRA is
 *   often exactly as big as the last one).
 * - Each batch compares "known before" with "present now" per path, so any order of raw events
 *   (unlink + add of an atomic rename, add + unlink of a short-lived file) gives one clean answer.
 */
import { stat } from 'node:fs/promises';
import { isAbsolute, relative, sep } from 'node:path';
import type { Stats } from 'node:fs';
import { watch, type FSWatcher } from 'chokidar';

// picomatch is the matcher fast-glob uses (via micromatch); it ships without types.
type GlobMatcher = (path: string) => boolean;
// eslint-disable-next-line @typescript-eslint/no-require-imports
const picomatch = require('picomatch') as (globs: string | string[], opts?: { dot?: boolean }) => GlobMatcher;

export interface WatchChange {
  added: string[];
  changed: string[];
  removed: string[];
}

export interface WatcherOptions {
  root: string;
  /** Globs relative to root; only matching files are reported. */
  include: string[];
  /** Globs relative to root; matching folders are not watched, matching files not reported. */
  exclude: string[];
  /** Quiet time before a batch goes out (default 300 ms). */
  debounceMs?: number;
  /** How long size and mtime must hold still before a file counts as written (default 1000 ms). */
  settleMs?: number;
  usePolling?: boolean;
}

export type WatchErrorCode = 'WATCH_LIMIT' | 'TOO_MANY_FILES' | 'OTHER';

export type WatcherEvent =
  | { kind: 'changes'; changes: WatchChange }
  | { kind: 'ready' }
  | { kind: 'error'; code: WatchErrorCode; message: string; advice: string; polling?: boolean };

/** Folders never watched, whatever the configuration says. */
const ALWAYS_EXCLUDED = new Set(['.git', 'node_modules', '.lora-sync']);

export function classifyWatchError(err: unknown): { code: WatchErrorCode; message: string; advice: string } {
  const e = err as { code?: unknown; message?: unknown } | null | undefined;
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (code === 'ENOSPC' || (!code && /\bENOSPC\b/.test(message))) {
    return {
      code: 'WATCH_LIMIT',
      message,
      advice:
        'The system limit on file watchers (inotify) is reached, so LoRA Sync polls this folder for changes instead (slower, more CPU). ' +
        'Raise the limit with `sudo sysctl fs.inotify.max_user_watches=524288` (keep it across reboots: put ' +
        '`fs.inotify.max_user_watches=524288` in /etc/sysctl.d/99-lora-sync.conf and run `sudo sysctl --system`), ' +
        'or exclude large folders in the LoRA Sync settings.',
    };
  }
  if (code === 'EMFILE' || code === 'ENFILE' || (!code && /\bE[MN]FILE\b/.test(message))) {
    return {
      code: 'TOO_MANY_FILES',
      message,
      advice:
        'Too many open files for the file watcher, so LoRA Sync polls this folder for changes instead (slower, more CPU). ' +
        'Raise the limit (e.g. `ulimit -n 65536` in the shell that starts VS Code, or `nofile` in /etc/security/limits.conf), ' +
        'or exclude large folders (datasets, virtual environments, build output) in the LoRA Sync settings.',
    };
  }
  return {
    code: 'OTHER',
    message,
    advice: 'The file watcher reported an error; LoRA Sync may miss some changes until the next full rescan.',
  };
}

/** What one path looked like when last stat'ed while it settles. */
interface Settling {
  size: number;
  mtimeMs: number;
  ino: number;
  stableSince: number;
}

export class WorkspaceWatcher {
  private readonly debounceMs: number;
  private readonly settleMs: number;
  private readonly pollMs: number;
  private readonly included: GlobMatcher;
  private readonly excluded: GlobMatcher;
  private watcher: FSWatcher | undefined;
  private ready = false;
  private closed = false;
  private _degraded = false;
  private polled = false;
  /** The fallback watcher's initial crawl: its 'add' events are files already known, not news. */
  private crawling = false;
  private readonly reportedCodes = new Set<WatchErrorCode>();
  /** Reportable files that exist as far as the last batch (or the initial crawl) knows. */
  private readonly known = new Set<string>();
  private readonly settling = new Map<string, Settling>();
  /** Paths touched since the last batch, with whether they exist now. */
  private readonly pending = new Map<string, boolean>();
  private pollTimer: NodeJS.Timeout | undefined;
  private polling = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private batchStarted = 0;
  private endStart: (() => void) | undefined;

  constructor(
    private readonly opts: WatcherOptions,
    private readonly onEvent: (e: WatcherEvent) => void,
  ) {
    this.debounceMs = opts.debounceMs ?? 300;
    this.settleMs = opts.settleMs ?? 1000;
    this.pollMs = Math.min(200, Math.max(20, Math.round(this.settleMs / 5)));
    this.included = picomatch(opts.include.length ? opts.include : ['**/*'], { dot: false });
    this.excluded = opts.exclude.length ? picomatch(opts.exclude, { dot: true }) : () => false;
  }

  /** True after a watch-limit (or open-file-limit) error: the watcher polls, the caller also reconciles more often. */
  get degraded(): boolean {
    return this._degraded;
  }

  /** True while changes are found by stat polling (asked for, or the fallback after a watch limit). */
  get usesPolling(): boolean {
    return this.polled;
  }

  start(): Promise<void> {
    if (this.watcher) throw new Error('WorkspaceWatcher already started');
    this.polled = this.opts.usePolling ?? false;
    return this.open(this.polled ? this.fallbackInterval() : undefined).then(() => {
      this.ready = true;
      if (this.closed) return;
      this.onEvent({ kind: 'ready' });
      // Test seam: act as if inotify_add_watch had failed (the real limit is per user, shared with
      // every process of that user, so tests cannot lower it safely).
      const seam = process.env.LORA_SYNC_WATCH_LIMIT;
      if ((seam === 'ENOSPC' || seam === 'EMFILE') && !this.polled)
        this.onError(
          Object.assign(new Error(`${seam}: inotify_add_watch '${this.opts.root}' refused (LORA_SYNC_WATCH_LIMIT)`), {
            code: seam,
          }),
        );
    });
  }

  /** Polling stats every file each interval: slower than the settle poll, so a big tree stays affordable. */
  private fallbackInterval(): number {
    return Math.max(1000, this.pollMs);
  }

  /** A chokidar watcher on the root; resolves after its initial crawl (or on close()). */
  private open(pollInterval: number | undefined): Promise<void> {
    const w = watch(this.opts.root, {
      ignored: (p: string, stats?: Stats) => this.isIgnored(p, stats),
      // The initial files are only recorded (the engine scans on its own), not reported.
      ignoreInitial: false,
      followSymlinks: false,
      usePolling: pollInterval !== undefined,
      interval: pollInterval ?? Math.max(50, this.pollMs),
      binaryInterval: pollInterval ?? Math.max(100, this.pollMs),
      ignorePermissionErrors: true,
    });
    this.watcher = w;
    w.on('add', (p: string) => this.onRaw(p, true));
    w.on('change', (p: string) => this.onRaw(p, true));
    w.on('unlink', (p: string) => this.onRaw(p, false));
    w.on('error', (err: unknown) => this.onError(err));
    return new Promise<void>((resolve) => {
      w.once('ready', () => resolve());
      // close() before the crawl ends must not leave start() hanging.
      this.endStart = resolve;
    });
  }

  /**
   * The OS refused more watches: inotify now misses changes under the folders it could not watch,
   * so the whole root is polled instead. The error goes out once the polling watcher has crawled,
   * so the caller's reconcile after it covers whatever changed during the switch.
   */
  private async fallBackToPolling(c: { code: WatchErrorCode; message: string; advice: string }): Promise<void> {
    this.polled = true;
    const old = this.watcher;
    this.crawling = true;
    try {
      await old?.close();
      if (this.closed) return;
      await this.open(this.fallbackInterval());
    } finally {
      this.crawling = false;
    }
    if (!this.closed) this.onEvent({ kind: 'error', ...c, polling: true });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.flushTimer);
    clearTimeout(this.pollTimer);
    this.settling.clear();
    this.pending.clear();
    this.endStart?.();
    await this.watcher?.close();
  }

  /** The underlying chokidar watcher, so tests can inject its events (e.g. an 'error'). */
  _watcherForTests(): FSWatcher | undefined {
    return this.watcher;
  }

  /** Path relative to the root with '/' separators, NFC (config globs are NFC); undefined outside the root. */
  private relOf(p: string): string | undefined {
    const rel = relative(this.opts.root, p);
    if (rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) return undefined;
    return rel.split(sep).join('/').normalize('NFC');
  }

  /** Excluded folders and files (dot segments, always-excluded names, exclude globs) on any level. */
  private isExcludedRel(rel: string): boolean {
    const segs = rel.split('/');
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i]!;
      if (s.startsWith('.') || ALWAYS_EXCLUDED.has(s)) return true;
      if (this.excluded(segs.slice(0, i + 1).join('/'))) return true;
    }
    return false;
  }

  private isIgnored(p: string, stats?: Stats): boolean {
    const rel = this.relOf(p);
    if (rel === undefined || rel === '') return false;
    if (this.isExcludedRel(rel)) return true;
    // Without stats chokidar does not yet know whether this is a folder: keep it for the second call.
    return stats !== undefined && !stats.isDirectory() && !this.included(rel);
  }

  private isReportable(p: string): boolean {
    const rel = this.relOf(p);
    return rel !== undefined && rel !== '' && !this.isExcludedRel(rel) && this.included(rel);
  }

  private onRaw(p: string, present: boolean): void {
    if (this.closed || !this.isReportable(p)) return;
    if (!this.ready || (this.crawling && present)) {
      // Initial crawl: remember what exists, report nothing.
      if (present) this.known.add(p);
      else this.known.delete(p);
      return;
    }
    if (present) {
      const s = this.settling.get(p);
      if (s)
        s.stableSince = Date.now(); // still being written
      else this.settling.set(p, { size: -1, mtimeMs: -1, ino: -1, stableSince: Date.now() });
      this.schedulePoll();
    } else {
      this.settling.delete(p);
      this.record(p, false);
    }
  }

  private schedulePoll(): void {
    if (this.pollTimer || this.polling || this.closed || this.settling.size === 0) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = undefined;
      void this.pollSettling();
    }, this.pollMs);
  }

  /** Stats each settling file; one whose size, mtime and inode held still for settleMs is recorded. */
  private async pollSettling(): Promise<void> {
    this.polling = true;
    try {
      for (const [p, s] of [...this.settling]) {
        let st: Stats | undefined;
        try {
          st = await stat(p);
        } catch {
          st = undefined; // gone (its unlink event follows) or unreadable: stop waiting for it
        }
        if (this.closed) return;
        if (this.settling.get(p) !== s) continue; // an unlink or a new entry came while we waited
        if (!st?.isFile()) {
          this.settling.delete(p);
          if (!st) this.record(p, false);
          continue;
        }
        const now = Date.now();
        if (st.size !== s.size || st.mtimeMs !== s.mtimeMs || st.ino !== s.ino) {
          Object.assign(s, { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, stableSince: now });
        } else if (now - s.stableSince >= this.settleMs) {
          this.settling.delete(p);
          this.record(p, true);
        }
      }
    } finally {
      this.polling = false;
    }
    this.schedulePoll();
    // A batch held back for a settling path may be ready now.
    if (this.pending.size > 0 && !this.flushTimer) this.scheduleFlush();
  }

  private record(p: string, present: boolean): void {
    if (this.pending.size === 0) this.batchStarted = Date.now();
    this.pending.set(p, present);
    this.scheduleFlush();
  }

  /** The longest a batch waits: long enough for the other half of a rename to settle. */
  private batchDeadline(): number {
    return this.batchStarted + Math.max(2000, 2 * this.settleMs + this.debounceMs, 10 * this.debounceMs);
  }

  /** Trailing debounce, capped so a busy workspace still gets batches out. */
  private scheduleFlush(): void {
    if (this.closed) return;
    clearTimeout(this.flushTimer);
    const delay = Math.max(0, Math.min(this.debounceMs, this.batchDeadline() - Date.now()));
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      this.flush();
    }, delay);
  }

  private flush(): void {
    if (this.closed || this.pending.size === 0) return;
    // While files are still being written the batch waits (up to its deadline; the poll
    // reschedules us), so a rename gives one batch with the removal and the addition.
    if (this.settling.size > 0 && Date.now() < this.batchDeadline()) return;
    const changes: WatchChange = { added: [], changed: [], removed: [] };
    for (const [p, present] of this.pending) {
      // Being written again (the add half of an atomic replace): it stays pending, so that
      // one replace gives one 'changed', never 'removed' then 'added'.
      if (this.settling.has(p)) continue;
      this.pending.delete(p);
      const before = this.known.has(p);
      if (present) {
        (before ? changes.changed : changes.added).push(p);
        this.known.add(p);
      } else {
        if (before) changes.removed.push(p);
        this.known.delete(p);
      }
    }
    if (this.pending.size > 0) this.batchStarted = Date.now();
    for (const list of [changes.added, changes.changed, changes.removed]) list.sort();
    if (changes.added.length + changes.changed.length + changes.removed.length > 0) {
      this.onEvent({ kind: 'changes', changes });
    }
  }

  private onError(err: unknown): void {
    if (this.closed) return;
    const c = classifyWatchError(err);
    if (c.code !== 'OTHER') {
      this._degraded = true;
      // One folder after another fails the same way: say it once.
      if (this.reportedCodes.size > 0 || this.polled) return;
      this.reportedCodes.add(c.code);
      void this.fallBackToPolling(c).catch((e) =>
        this.onEvent({ kind: 'error', ...classifyWatchError(e), polling: false }),
      );
      return;
    }
    this.onEvent({ kind: 'error', ...c });
  }
}
