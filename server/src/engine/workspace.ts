/**
 * A workspace: the root folder, its config, and the engine's view of it (entries, copy map,
 * statuses). The CLI and the language server both drive the engine through this class.
 */
import { unlink } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import fg from 'fast-glob';
import { EngineConfig, STATE_DIR, loadConfig } from './config';
import { FileEntry, isSourcePath, readEntry } from './loraFile';
import { buildCopyMap, CopyMap, LoraGroup, primarySource } from './copyMap';
import { describeStatus, FileStatus, Issue, SOUND, statusOf, Status, STATUSES } from './statusRules';
import { planSync, PlannedLora, PlanOptions } from './syncPlanner';
import { executeSync, SyncOptions, SyncResult } from './syncExecutor';
import { History, HistoryEvent } from './history';
import { mapLimit } from '../io/mapLimit';
import { isTempFile, TEMP_MARK } from '../io/atomicWrite';

export interface ScanOptions { concurrency?: number; onProgress?: (done: number, total: number) => void; cancelled?: () => boolean }

export interface FileReport { path: string; role: 'source' | 'copy' | null; lora_id: string | null; status: Status | 'UNRECOGNIZED'; message: string; issues: Issue[] }

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

export interface StatusReport { root: string; stats: Stats; loras: LoraReport[]; files: FileReport[] }

export interface VerifyReport { is_consistent: boolean; issues: Issue[]; loras: Array<{ id: string; name: string; is_consistent: boolean; issues: Issue[] }> }

/** Relative path with '/' separators, NFC: how every path is shown and keyed. */
export function relPath(root: string, abs: string): string {
  return relative(root, abs).split(sep).join('/').normalize('NFC');
}

export class Workspace {
  readonly history: History;
  private entries = new Map<string, FileEntry>();
  private absOf = new Map<string, string>();
  private map: CopyMap = { loras: new Map(), unrecognized: [], unattached: [] };
  private statuses = new Map<string, FileStatus>();

  private constructor(readonly root: string, readonly cfg: EngineConfig) {
    this.history = new History(root);
  }

  static async open(root: string, overrides?: unknown): Promise<Workspace> {
    return new Workspace(root, await loadConfig(root, overrides));
  }

  /** Every checkpoint file under the root that the config includes (links are not followed). */
  async listFiles(): Promise<string[]> {
    return fg(this.cfg.include, { cwd: this.root, ignore: this.cfg.exclude, absolute: true, onlyFiles: true, followSymbolicLinks: false, dot: false, suppressErrors: true });
  }

  /** Reads every file and computes the copy map and statuses. */
  async scan(opts: ScanOptions = {}): Promise<void> {
    const files = await this.listFiles();
    const entries = new Map<string, FileEntry>();
    const absOf = new Map<string, string>();
    let done = 0;
    await mapLimit(files, opts.concurrency ?? 8, async (abs) => {
      if (opts.cancelled?.()) return;
      const rel = relPath(this.root, abs);
      try {
        const e = await readEntry(abs, rel, this.cfg);
        entries.set(rel, e);
        absOf.set(rel, abs);
      } catch (e) {
        // The file vanished or cannot be opened (permissions): report it, never stop the scan.
        entries.set(rel, { path: rel, size: 0, mtimeMs: 0, ino: 0, kind: 'corrupt', role: isSourcePath(rel, this.cfg) ? 'source' : 'copy', unsafeGlobals: [], tensors: [], tensorsDigest: '', metaDigest: '', metaKeys: {}, copyKeys: [], syncInfo: {}, error: { code: (e as NodeJS.ErrnoException).code ?? 'IO_ERROR', message: (e as Error).message } });
        absOf.set(rel, abs);
      }
      opts.onProgress?.(++done, files.length);
    });
    this.entries = entries;
    this.absOf = absOf;
    this.recompute();
  }

  /** Re-reads the given files (relative paths) and recomputes statuses. */
  async refresh(rels: string[]): Promise<void> {
    for (const rel of rels) {
      const abs = this.absOf.get(rel) ?? join(this.root, rel);
      try {
        this.entries.set(rel, await readEntry(abs, rel, this.cfg));
        this.absOf.set(rel, abs);
      } catch {
        this.entries.delete(rel);
        this.absOf.delete(rel);
      }
    }
    this.recompute();
  }

  private recompute(): void {
    this.map = buildCopyMap(this.entries.values(), (p) => isSourcePath(p, this.cfg));
    const groupOf = new Map<string, LoraGroup>();
    for (const g of this.map.loras.values()) for (const f of [...g.sources, ...g.copies, ...g.broken]) groupOf.set(f.path, g);
    this.statuses = new Map();
    for (const e of this.entries.values()) if (e.kind !== 'unrecognized') this.statuses.set(e.path, statusOf(e, groupOf.get(e.path)));
  }

  copyMap(): CopyMap {
    return this.map;
  }
  entry(rel: string): FileEntry | undefined {
    return this.entries.get(rel);
  }
  status(rel: string): FileStatus | undefined {
    return this.statuses.get(rel);
  }
  abs(rel: string): string {
    return this.absOf.get(rel) ?? join(this.root, rel);
  }

  private sourceEntry(rel: string): FileEntry | undefined {
    const s = this.statuses.get(rel)?.source;
    return s ? this.entries.get(s) : undefined;
  }

  fileReport(e: FileEntry): FileReport {
    const s = this.statuses.get(e.path);
    if (!s) return { path: e.path, role: null, lora_id: null, status: 'UNRECOGNIZED', message: `not a LoRA checkpoint${e.error ? `: ${e.error.message}` : ''}; left alone`, issues: [] };
    return { path: e.path, role: e.role ?? null, lora_id: e.loraId ?? null, status: s.status, message: describeStatus(e, s, this.sourceEntry(e.path)), issues: s.issues };
  }

  async stats(): Promise<Stats> {
    const by: Record<string, number> = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    for (const s of this.statuses.values()) by[s.status]++;
    const loras = this.map.loras.size;
    const copies = [...this.map.loras.values()].reduce((n, g) => n + g.copies.length + g.broken.filter((b) => b.role === 'copy').length, 0);
    const { events } = await this.history.read();
    return {
      total_loras_tracked: loras,
      total_copies_tracked: copies,
      total_syncs_performed: events.filter((e) => e.event === 'SYNC' && (e.synced_copies ?? 0) > 0).length,
      average_copies_per_lora: loras ? Math.round((copies / loras) * 100) / 100 : 0,
      files: this.entries.size,
      unrecognized: this.map.unrecognized.length,
      by_status: by,
    };
  }

  async report(): Promise<StatusReport> {
    const loras: LoraReport[] = [...this.map.loras.values()].map((g) => {
      const files = [...g.sources, ...g.copies, ...g.broken];
      const copies = [...g.copies, ...g.broken.filter((b) => b.role === 'copy')].sort((a, b) => (a.path < b.path ? -1 : 1));
      return {
        id: g.id, name: g.name, source: primarySource(g)?.path ?? null, sources: g.sources.map((s) => s.path),
        copies: copies.map((c) => ({ path: c.path, status: this.statuses.get(c.path)!.status })),
        problems: files.filter((f) => !SOUND.has(this.statuses.get(f.path)!.status)).length,
      };
    });
    const files = [...this.entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)).map((e) => this.fileReport(e));
    return { root: this.root, stats: await this.stats(), loras, files };
  }

  /** The seed's verify_sync_integrity: for one LoRA or all, {is_consistent, issues}. */
  verify(loraIds?: string[]): VerifyReport {
    const out: VerifyReport['loras'] = [];
    for (const g of this.map.loras.values()) {
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
    return planSync(this.map, (e) => this.statuses.get(e.path)!, opts);
  }

  /** Executes a plan, records one history event per LoRA, and refreshes what was written. */
  async sync(plan: PlannedLora[], opts: SyncOptions): Promise<SyncResult> {
    await this.removeStaleTempFiles();
    const res = await executeSync(plan, { root: this.root, cfg: this.cfg, abs: (r) => this.abs(r), entry: (r) => this.entries.get(r) }, opts);
    const time = (opts.now ?? (() => new Date()))().toISOString();
    const events: HistoryEvent[] = [];
    for (const l of res.loras) {
      const acted = l.copies.filter((c) => c.outcome === 'synced' || c.outcome === 'failed');
      if (!acted.length && !l.copies.some((c) => c.outcome === 'skipped' && c.reason !== 'already in sync')) continue;
      const failed = l.copies.filter((c) => c.outcome === 'failed');
      events.push({
        time, event: 'SYNC', lora_id: l.id, name: l.name, match_idx: opts.match, reason: opts.reason,
        synced_copies: l.copies.filter((c) => c.outcome === 'synced').length, failed_copies: failed.length,
        skipped_copies: l.copies.filter((c) => c.outcome === 'skipped' || c.outcome === 'refused').length, total_copies: l.copies.length,
        ...(failed.length ? { files: failed.map((f) => f.path), details: { failures: Object.fromEntries(failed.map((f) => [f.path, f.reason])) } } : {}),
      });
      for (const c of l.copies) {
        if (c.backup && c.outcome === 'synced') events.push({ time, event: 'FORCE_OVERWRITE', lora_id: l.id, name: l.name, reason: opts.reason, files: [c.path], backup: c.backup });
      }
    }
    if (events.length) await this.history.append(events);
    const written = res.loras.flatMap((l) => l.copies.filter((c) => c.entry).map((c) => [c.path, c.entry!] as const));
    for (const [p, e] of written) this.entries.set(p, e);
    if (written.length) this.recompute();
    return res;
  }

  /** Records a verify run in the history, one event per LoRA. */
  async recordVerify(v: VerifyReport): Promise<void> {
    const time = new Date().toISOString();
    await this.history.append(v.loras.map((l) => ({ time, event: 'VERIFY' as const, lora_id: l.id, name: l.name, consistent: l.is_consistent, files: [...new Set(l.issues.map((i) => i.file))] })));
  }

  /**
   * Temporary files left by a write that was killed: `.<name>.lora-sync-tmp-<pid>-<rand>`. Removed
   * when the process that made them is gone (a live one may still be writing).
   */
  async removeStaleTempFiles(): Promise<string[]> {
    const temps = await fg(`**/.*${TEMP_MARK}*`, { cwd: this.root, ignore: this.cfg.exclude, dot: true, absolute: true, onlyFiles: true, followSymbolicLinks: false, suppressErrors: true });
    const removed: string[] = [];
    for (const t of temps) {
      const name = t.slice(t.lastIndexOf('/') + 1);
      if (!isTempFile(name)) continue;
      const pid = Number(/lora-sync-tmp-(\d+)-/.exec(name)?.[1]);
      if (pid && pid !== process.pid && isAlive(pid)) continue;
      if (pid === process.pid) continue;
      await unlink(t).catch(() => undefined);
      removed.push(relPath(this.root, t));
    }
    return removed;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export { STATE_DIR };
