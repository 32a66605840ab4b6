/**
 * The live loop the language server and `lora-sync watch` share: a first scan (warm from the
 * cache), then file events from the watcher (debounced, settled) applied incrementally, a periodic
 * full reconcile (watchers miss events; a laptop wakes up), and auto-sync: the seed's "after every
 * match" (a source that settles after a change gets its STALE copies synced) and "every N matches"
 * (a full verify and sync). Batches are handled one at a time, in order.
 */
import { ADAPTER_CONFIG } from '../layouts/peft';
import type { Workspace, ScanSummary, StatusChange } from './workspace';
import { WorkspaceWatcher, type WatcherEvent, type WatchChange } from './watcher';
import type { SyncResult } from './syncExecutor';
import type { PlannedLora } from './syncPlanner';

export type LiveEvent =
  | { kind: 'scanned'; summary: ScanSummary; full: boolean }
  | { kind: 'statuses'; changes: StatusChange[] }
  | { kind: 'synced'; reason: string; loras: string[]; result: SyncResult }
  | { kind: 'verified'; consistent: boolean; issues: number }
  | { kind: 'watch-error'; code: string; message: string; advice: string; polling: boolean }
  | { kind: 'error'; message: string };

export interface LiveOptions {
  /** Watch for changes (default true); false = periodic reconcile only. */
  watch?: boolean;
  usePolling?: boolean;
}

export class LiveIndex {
  private watcher: WorkspaceWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private queue: Promise<void> = Promise.resolve();
  private sourceUpdates = 0;
  private stopped = false;

  constructor(
    readonly ws: Workspace,
    private readonly onEvent: (e: LiveEvent) => void,
    private readonly opts: LiveOptions = {},
  ) {}

  /** Scans, starts watching and the reconcile timer. Resolves once the first scan is done. */
  async start(): Promise<void> {
    await this.enqueue(async () => {
      const summary = await this.ws.scan();
      this.onEvent({ kind: 'scanned', summary, full: true });
    });
    if (this.opts.watch !== false) {
      const cfg = this.ws.cfg;
      this.watcher = new WorkspaceWatcher(
        {
          root: this.ws.root,
          // A PEFT adapter's config is part of its metadata: its edits are changes of the adapter (Workspace.update).
          include: [...cfg.include, `**/${ADAPTER_CONFIG}`],
          exclude: cfg.exclude,
          debounceMs: cfg.debounceMs,
          settleMs: cfg.settleMs,
          usePolling: this.opts.usePolling,
        },
        (e) => this.onWatcher(e),
      );
      await this.watcher.start();
    }
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.watcher?.close();
    await this.queue;
    await this.ws.flushCache();
  }

  /** Waits until every queued batch has been handled (tests, and callers that need a settled view). */
  idle(): Promise<void> {
    return this.queue;
  }

  /**
   * Runs other work on the workspace (a sync or verify asked for by a user) in the same queue as
   * watcher batches, so the two never interleave. Its result or error is the caller's.
   */
  run<T>(job: () => Promise<T>): Promise<T> {
    const result = this.queue.then(job);
    this.queue = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** A full reconcile now (also what the timer does). */
  reconcile(): Promise<void> {
    return this.enqueue(async () => {
      const summary = await this.ws.scan();
      this.onEvent({ kind: 'scanned', summary, full: false });
      if (summary.changes.length) this.onEvent({ kind: 'statuses', changes: summary.changes });
    });
  }

  private schedule(): void {
    const every = this.ws.cfg.reconcileSeconds;
    // Without a working watcher, reconcile is the only way to see changes: do it more often.
    const seconds = this.watcher?.degraded || this.opts.watch === false ? Math.min(every || 30, 30) : every;
    if (!seconds || this.stopped) return;
    this.timer = setTimeout(() => {
      void this.reconcile().finally(() => this.schedule());
    }, seconds * 1000);
    this.timer.unref();
  }

  private enqueue(job: () => Promise<void>): Promise<void> {
    const run = this.queue.then(job).catch((e) => this.onEvent({ kind: 'error', message: (e as Error).message }));
    this.queue = run;
    return run;
  }

  private onWatcher(e: WatcherEvent): void {
    if (e.kind === 'changes') void this.enqueue(() => this.handle(e.changes));
    else if (e.kind === 'error') {
      this.onEvent({ kind: 'watch-error', code: e.code, message: e.message, advice: e.advice, polling: !!e.polling });
      if (this.timer) clearTimeout(this.timer);
      // What changed while the watcher was failing (or switching to polling) is found now, not in 30 s.
      if (!this.stopped) void this.reconcile().finally(() => this.schedule());
    }
  }

  /** One batch of settled file changes. */
  async handle(batch: WatchChange): Promise<void> {
    const changes = await this.ws.update([...batch.added, ...batch.changed, ...batch.removed]);
    if (changes.length) this.onEvent({ kind: 'statuses', changes });
    if (this.ws.cfg.autoSync !== 'onSourceChange') return;
    const touched = [...batch.added, ...batch.changed].map((p) => this.ws.entryAt(p)).filter((x) => x !== undefined);
    const sources = touched.filter((e) => e.role === 'source' && e.kind === 'lora' && e.loraId);
    // A new copy (a LoRA promoted into a hall) is synced at once if it is behind its source.
    const added = new Set(batch.added.map((p) => this.ws.entryAt(p)?.path));
    const newCopies = touched.filter(
      (e) => e.role === 'copy' && added.has(e.path) && this.ws.status(e.path)?.status === 'STALE',
    );
    const ids = [...new Set([...sources, ...newCopies].map((e) => e.loraId!))];
    if (ids.length) await this.syncStale(ids, sources.length ? 'LEARNING_UPDATE' : 'ROLE_CHANGE');
    this.sourceUpdates += sources.length;
    const every = this.ws.cfg.fullSyncEvery;
    if (every && sources.length && this.sourceUpdates >= every) {
      this.sourceUpdates = 0;
      await this.fullSync();
    }
  }

  /** Syncs only the STALE copies of these LoRAs (never DIVERGED or mismatched ones, never forced). */
  private async syncStale(ids: string[], reason: string): Promise<void> {
    const plan: PlannedLora[] = this.ws.plan({ loras: ids }).map((l) => ({
      ...l,
      copies: l.copies.map((c) =>
        c.action === 'write' && c.status !== 'STALE'
          ? { ...c, action: 'skip' as const, why: 'auto-sync writes STALE copies only' }
          : c,
      ),
    }));
    if (!plan.some((l) => l.copies.some((c) => c.action === 'write'))) return;
    const result = await this.syncReporting(plan, reason);
    this.onEvent({ kind: 'synced', reason, loras: ids, result });
  }

  /**
   * Syncs and reports the copies whose status the sync changed (STALE → IN_SYNC) as a `statuses`
   * event, like any other change: `lora-sync watch` printed a copy going STALE and never coming back.
   */
  private async syncReporting(plan: PlannedLora[], reason: string): Promise<SyncResult> {
    const paths = plan.flatMap((l) => l.copies.filter((c) => c.action === 'write').map((c) => c.path));
    const before = new Map(paths.map((p) => [p, this.ws.status(p)?.status]));
    const result = await this.ws.sync(plan, { reason });
    const changes: StatusChange[] = [];
    for (const [path, was] of before) {
      const now = this.ws.status(path)?.status;
      if (now !== was) changes.push({ path, before: was, after: now });
    }
    if (changes.length) this.onEvent({ kind: 'statuses', changes });
    return result;
  }

  /** The seed's every-N-matches pass: reconcile with the disk, verify, sync everything that may be. */
  async fullSync(): Promise<void> {
    const summary = await this.ws.scan();
    if (summary.changes.length) this.onEvent({ kind: 'statuses', changes: summary.changes });
    const v = this.ws.verify();
    await this.ws.recordVerify(v);
    this.onEvent({ kind: 'verified', consistent: v.is_consistent, issues: v.issues.length });
    const result = await this.syncReporting(this.ws.plan(), 'FULL_SYNC');
    this.onEvent({
      kind: 'synced',
      reason: 'FULL_SYNC',
      loras: result.loras.filter((l) => l.copies.some((c) => c.outcome === 'synced')).map((l) => l.id),
      result,
    });
  }
}
