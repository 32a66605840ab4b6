/**
 * Engine values → the protocol's wire types, field by field, in this one place: an engine field
 * renamed fails to compile here instead of silently changing what the client receives, and an
 * engine-only field (a sync's read-back entry, a cache key) never travels. Optional fields absent
 * in the engine stay absent on the wire.
 */
import type { HistoryEvent as EngineHistoryEvent } from '../engine/history';
import type { Issue as EngineIssue } from '../engine/statusRules';
import type { LoraSyncResult } from '../engine/syncExecutor';
import type { PlannedLora as EnginePlannedLora } from '../engine/syncPlanner';
import type { TensorDiff as EngineTensorDiff } from '../engine/tensorDiff';
import type {
  FileReport as EngineFileReport,
  LoraReport as EngineLoraReport,
  ScanSummary as EngineScanSummary,
  Stats as EngineStats,
  VerifyReport as EngineVerifyReport,
} from '../engine/workspace';
import type { TensorDiff } from '../protocol/inspect';
import type {
  FileReport,
  HistoryEvent,
  Issue,
  LoraReport,
  LoraSyncSummary,
  PlannedLora,
  ScanSummary,
  Stats,
  VerifyReport,
} from '../protocol/reports';
import { STATUSES, type Status } from '../protocol/statusTable';

/** `{ [key]: value }` when the value is defined, else nothing. */
function opt<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

export function issueToWire(i: EngineIssue): Issue {
  return { type: i.type, file: i.file, ...opt('param', i.param), detail: i.detail };
}

export function fileReportToWire(r: EngineFileReport): FileReport {
  return {
    path: r.path,
    role: r.role,
    lora_id: r.lora_id,
    status: r.status,
    message: r.message,
    issues: r.issues.map(issueToWire),
    ...opt('identified_by', r.identified_by),
    ...opt('layout', r.layout),
    ...opt('unit', r.unit && { kind: r.unit.kind, path: r.unit.path }),
    ...opt('version', r.version),
    ...opt('why', r.why),
  };
}

export function loraReportToWire(l: EngineLoraReport): LoraReport {
  return {
    id: l.id,
    name: l.name,
    source: l.source,
    sources: [...l.sources],
    copies: l.copies.map((c) => ({ path: c.path, status: c.status })),
    problems: l.problems,
  };
}

export function plannedLoraToWire(l: EnginePlannedLora): PlannedLora {
  return {
    id: l.id,
    name: l.name,
    ...opt('source', l.source),
    ...opt('blocked', l.blocked),
    copies: l.copies.map((c) => ({ path: c.path, status: c.status, action: c.action, why: c.why })),
  };
}

export function syncedLoraToWire(l: LoraSyncResult): LoraSyncSummary {
  return {
    id: l.id,
    name: l.name,
    ...opt('source', l.source),
    copies: l.copies.map((c) => ({
      path: c.path,
      outcome: c.outcome,
      reason: c.reason,
      ...opt('backup', c.backup),
    })),
  };
}

export function verifyReportToWire(v: EngineVerifyReport): VerifyReport {
  return {
    is_consistent: v.is_consistent,
    issues: v.issues.map(issueToWire),
    loras: v.loras.map((l) => ({
      id: l.id,
      name: l.name,
      is_consistent: l.is_consistent,
      issues: l.issues.map(issueToWire),
    })),
  };
}

export function statsToWire(s: EngineStats): Stats {
  const byStatus = Object.fromEntries(STATUSES.map((st) => [st, s.by_status[st] ?? 0])) as Record<Status, number>;
  return {
    total_loras_tracked: s.total_loras_tracked,
    total_copies_tracked: s.total_copies_tracked,
    total_syncs_performed: s.total_syncs_performed,
    average_copies_per_lora: s.average_copies_per_lora,
    files: s.files,
    unrecognized: s.unrecognized,
    by_status: byStatus,
  };
}

export function historyEventToWire(e: EngineHistoryEvent): HistoryEvent {
  return {
    time: e.time,
    event: e.event,
    lora_id: e.lora_id,
    name: e.name,
    ...opt('match_idx', e.match_idx),
    ...opt('reason', e.reason),
    ...opt('synced_copies', e.synced_copies),
    ...opt('failed_copies', e.failed_copies),
    ...opt('skipped_copies', e.skipped_copies),
    ...opt('total_copies', e.total_copies),
    ...opt('consistent', e.consistent),
    ...opt('files', e.files),
    ...opt('backup', e.backup),
    ...opt('details', e.details),
  };
}

export function scanSummaryToWire(s: EngineScanSummary): ScanSummary {
  return {
    files: s.files,
    read: s.read,
    reused: s.reused,
    removed: s.removed,
    ...opt('cacheNote', s.cacheNote),
    changes: s.changes.map((c) => ({ path: c.path, ...opt('before', c.before), ...opt('after', c.after) })),
    timings: { ...s.timings },
  };
}

export function tensorDiffToWire(d: EngineTensorDiff): TensorDiff {
  return {
    name: d.name,
    kind: d.kind,
    ...opt('compared', d.compared),
    ...opt('maxAbsDiff', d.maxAbsDiff),
    ...opt('differing', d.differing),
    ...opt('numel', d.numel),
    ...opt('nanMismatches', d.nanMismatches),
    ...opt('note', d.note),
    ...opt('source', d.source && { dtype: d.source.dtype, shape: [...d.source.shape] }),
  };
}
