/**
 * What the CLI, the language server and the views report about a workspace: per-file reports,
 * statistics, the status report and the seed's verify, all read from the engine's state.
 */
import type { CopyMap, IdentifiedBy, LoraGroup } from './copyMap';
import type { EngineConfig } from './config';
import { CONFIG_FILE } from './config';
import { versionLabel } from '../layouts/versions';
import type { LayoutKind } from '../layouts/types';
import { primarySource } from './copyMap';
import type { History, HistoryEvent } from './history';
import type { FileEntry } from './loraFile';
import { describeStatus, type FileStatus, type Issue, SOUND, type Status, STATUSES } from './statusRules';

export interface FileReport {
  path: string;
  role: 'source' | 'copy' | null;
  lora_id: string | null;
  status: Status | 'UNRECOGNIZED';
  message: string;
  issues: Issue[];
  /** How the file was tied to its LoRA (readable LoRA files only). */
  identified_by?: IdentifiedBy;
  layout?: LayoutKind;
  unit?: { kind: 'file' | 'folder'; path: string };
  /** Where in its training run the file is, in words (`epoch 8`). */
  version?: string;
  /** Why the file is no LoRA (UNRECOGNIZED only). */
  why?: string;
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
  /** Things to tell the user once about the whole workspace (no source folder); absent when none. */
  hints?: string[];
}

export interface VerifyReport {
  is_consistent: boolean;
  issues: Issue[];
  loras: Array<{ id: string; name: string; is_consistent: boolean; issues: Issue[] }>;
}

/** What the reports read (a Workspace). */
export interface ReportSource {
  readonly root: string;
  readonly history: History;
  copyMap(): CopyMap;
  entry(rel: string): FileEntry | undefined;
  entries(): Iterable<FileEntry>;
  fileCount(): number;
  status(rel: string): FileStatus | undefined;
  statuses(): Iterable<FileStatus>;
  groupOf(rel: string): LoraGroup | undefined;
  identifiedBy(rel: string): IdentifiedBy | undefined;
  readonly cfg: EngineConfig;
}

export function fileReport(ws: ReportSource, e: FileEntry): FileReport {
  const s = ws.status(e.path);
  if (!s)
    return {
      path: e.path,
      role: null,
      lora_id: null,
      status: 'UNRECOGNIZED',
      message: `not a LoRA checkpoint${e.error ? `: ${e.error.message}` : ''}; left alone`,
      issues: [],
      ...(e.why ? { why: e.why } : {}),
    };
  // An unreadable file has no id of its own: it belongs to the LoRA its name attached it to. A copy
  // tied by its sync record or content belongs to that LoRA, whatever its own id says.
  const by = ws.identifiedBy(e.path);
  const version = versionLabel(e.version);
  return {
    path: e.path,
    role: e.role ?? null,
    lora_id: ws.groupOf(e.path)?.id ?? e.loraId ?? null,
    status: s.status,
    message: describeStatus(e, s, s.source ? ws.entry(s.source) : undefined),
    issues: s.issues,
    ...(by ? { identified_by: by } : {}),
    ...(e.layout ? { layout: e.layout } : {}),
    ...(e.unit ? { unit: e.unit } : {}),
    ...(version ? { version } : {}),
  };
}

/** The one hint a workspace with LoRA files but no source folder gets, instead of an orphan per file. */
export function noSourceHint(ws: ReportSource): string | undefined {
  let loraFiles = 0;
  for (const e of ws.entries()) {
    if (e.role === 'source' && e.kind !== 'unrecognized') return undefined;
    if (e.kind === 'lora') loraFiles++;
  }
  if (!loraFiles) return undefined;
  const now = ws.cfg.sourceFolders.map((v) => JSON.stringify(v)).join(', ');
  return (
    `no source folder: none of the ${loraFiles} LoRA file${loraFiles === 1 ? '' : 's'} lies in a folder "sourceFolders" names (${now}), ` +
    `so every copy is an orphan. Designate the folder your trainer writes to: add it to "sourceFolders" in ${CONFIG_FILE} ` +
    `(a name a folder contains, or a glob on the folder's path such as "train/**"), or right-click it in the VS Code Explorer and ` +
    `choose "LoRA Sync: Use Folder as Source".`
  );
}

export async function stats(ws: ReportSource): Promise<Stats> {
  const by: Record<string, number> = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const s of ws.statuses()) by[s.status]++;
  const map = ws.copyMap();
  const loras = map.loras.size;
  const copies = [...map.loras.values()].reduce(
    (n, g) => n + g.copies.length + g.broken.filter((b) => b.role === 'copy').length,
    0,
  );
  return {
    total_loras_tracked: loras,
    total_copies_tracked: copies,
    total_syncs_performed: await ws.history.syncCount(),
    average_copies_per_lora: loras ? Math.round((copies / loras) * 100) / 100 : 0,
    files: ws.fileCount(),
    unrecognized: map.unrecognized.length,
    by_status: by,
  };
}

export async function report(ws: ReportSource): Promise<StatusReport> {
  const loras: LoraReport[] = [...ws.copyMap().loras.values()].map((g) => {
    const files = [...g.sources, ...g.copies, ...g.broken];
    const copies = [...g.copies, ...g.broken.filter((b) => b.role === 'copy')].sort((a, b) =>
      a.path < b.path ? -1 : 1,
    );
    return {
      id: g.id,
      name: g.name,
      source: primarySource(g)?.path ?? null,
      sources: g.sources.map((s) => s.path),
      copies: copies.map((c) => ({ path: c.path, status: ws.status(c.path)!.status })),
      problems: files.filter((f) => !SOUND.has(ws.status(f.path)!.status)).length,
    };
  });
  const files = [...ws.entries()]
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .map((e) => fileReport(ws, e));
  const hint = noSourceHint(ws);
  return { root: ws.root, stats: await stats(ws), loras, files, ...(hint ? { hints: [hint] } : {}) };
}

/** The seed's verify_sync_integrity: for one LoRA or all, {is_consistent, issues}. */
export function verify(ws: ReportSource, loraIds?: string[]): VerifyReport {
  const out: VerifyReport['loras'] = [];
  for (const g of ws.copyMap().loras.values()) {
    if (loraIds && !loraIds.includes(g.id)) continue;
    const issues = [...g.sources, ...g.copies, ...g.broken].flatMap((f) => {
      const s = ws.status(f.path)!;
      if (SOUND.has(s.status)) return [];
      return s.issues.length ? s.issues : [{ type: 'PARAM_MISMATCH' as const, file: f.path, detail: s.status }];
    });
    out.push({ id: g.id, name: g.name, is_consistent: issues.length === 0, issues });
  }
  return { is_consistent: out.every((l) => l.is_consistent), issues: out.flatMap((l) => l.issues), loras: out };
}

/** The history events of a verify run: one VERIFY event per LoRA, with the files that have issues. */
export function verifyEvents(v: VerifyReport, time: string): HistoryEvent[] {
  return v.loras.map((l) => ({
    time,
    event: 'VERIFY' as const,
    lora_id: l.id,
    name: l.name,
    consistent: l.is_consistent,
    files: [...new Set(l.issues.map((i) => i.file))],
  }));
}
