/**
 * The data the server sends about files, LoRAs, plans, syncs, verifies, stats, history and scans:
 * plain JSON shapes, declared here field by field and filled from the engine in one place
 * (server/src/lsp/wire.ts), so an engine rename cannot change what the client receives. Paths are
 * relative to the workspace folder, '/'-separated, NFC.
 */
import type { ReportStatus, Status } from './statusTable';
import { thousands } from './thousands';

export type IssueType =
  | 'PARAM_MISMATCH'
  | 'PARAM_MISSING'
  | 'PARAM_EXTRA'
  | 'SHAPE_MISMATCH'
  | 'DTYPE_MISMATCH'
  | 'METADATA_MISMATCH'
  | 'LOAD_ERROR'
  | 'CRC_MISMATCH'
  | 'UNSAFE_GLOBAL'
  | 'NAMESPACE_TAMPERING'
  | 'TRAILING_DATA'
  | 'EMBEDDED_HASH_MISMATCH'
  | 'LFS_POINTER'
  | 'NO_SOURCE'
  | 'DUPLICATE_SOURCE'
  | 'CHANGED_SINCE_SYNC';

/** One thing wrong with a file (the seed's issue shape). */
export interface Issue {
  type: IssueType;
  /** The file the issue is about. */
  file: string;
  /** The tensor (or metadata key) concerned, when there is one. */
  param?: string;
  /** One sentence. */
  detail: string;
}

/** One checkpoint file and its status. */
export interface FileReport {
  path: string;
  /** From its folder: a source folder or anywhere else; null for a file that is no LoRA checkpoint. */
  role: 'source' | 'copy' | null;
  /** The LoRA it belongs to (an unreadable file: the one its name points at); null if none. */
  lora_id: string | null;
  status: ReportStatus;
  /** One sentence a user acts on (the diagnostic's message). */
  message: string;
  issues: Issue[];
  /**
   * How the file was tied to its LoRA: its `metadata.id`, the engine's own sync record in it, its
   * layout's name (kohya `ss_output_name`, the PEFT or diffusers folder), its file name, or its content
   * (tensors equal to a source or version of exactly one LoRA). Absent for files that are no LoRA.
   */
  identified_by?: IdentifiedBy;
  /** The layout the file is in; absent for files that are no LoRA. */
  layout?: Layout;
  /** What a sync writes as one: the file, or (PEFT, diffusers) the folder holding it. */
  unit?: { kind: 'file' | 'folder'; path: string };
  /** Where in its training run the file is, in words (`epoch 8`, `step 500`, `checkpoint-500`). */
  version?: string;
  /** Why a file is not a LoRA, in a few words (`no LoRA tensor names`); UNRECOGNIZED files only. */
  why?: string;
}

export type IdentifiedBy = 'metadata_id' | 'sync_record' | 'layout_name' | 'file_name' | 'content';
export type Layout = 'seed' | 'peft' | 'kohya' | 'diffusers' | 'state-dict';

/** One LoRA: its source(s) and copies. */
export interface LoraReport {
  id: string;
  name: string;
  /** The source its copies are compared with; null when none is readable. */
  source: string | null;
  /** Every file in a source folder claiming this id (more than one: DUPLICATE_SOURCE). */
  sources: string[];
  /** Copies, unreadable ones included, by path. */
  copies: Array<{ path: string; status: Status }>;
  /** Its files that need attention (not SOURCE or IN_SYNC). */
  problems: number;
}

export type PlanAction = 'write' | 'force' | 'skip' | 'refuse';

/** What a sync will do with one copy. */
export interface PlannedCopy {
  path: string;
  status: Status;
  action: PlanAction;
  /** Why: for skip/refuse the reason it is not written; for force, what will be lost to the backup. */
  why: string;
}

export interface PlannedLora {
  id: string;
  name: string;
  source?: string;
  /** Set when nothing of this LoRA can be synced (no source, unsafe or corrupt source, duplicates). */
  blocked?: string;
  copies: PlannedCopy[];
}

export type CopyOutcome = 'synced' | 'failed' | 'skipped' | 'refused';

/** What a sync did with one copy. */
export interface CopyOutcomeSummary {
  path: string;
  outcome: CopyOutcome;
  /** Why (a failure's cause, a refusal's reason, "already in sync"...). */
  reason: string;
  /** Forced overwrites: where the old file was kept (relative path). */
  backup?: string;
}

export interface LoraSyncSummary {
  id: string;
  name: string;
  source?: string;
  copies: CopyOutcomeSummary[];
}

/** `verify_sync_integrity` of one folder: for every LoRA checked, consistent or its issues. */
export interface VerifyReport {
  is_consistent: boolean;
  /** Every issue of every LoRA, in order. */
  issues: Issue[];
  loras: Array<{ id: string; name: string; is_consistent: boolean; issues: Issue[] }>;
}

/** The seed's stats, plus file counts. */
export interface Stats {
  total_loras_tracked: number;
  total_copies_tracked: number;
  /** SYNC events in the history that wrote at least one copy. */
  total_syncs_performed: number;
  /** Rounded to two decimals. */
  average_copies_per_lora: number;
  /** Checkpoint files indexed. */
  files: number;
  /** Of which no LoRA checkpoint. */
  unrecognized: number;
  /** Files per status, every status listed (0 included), in STATUSES order. */
  by_status: Record<Status, number>;
}

export type HistoryEventKind = 'SYNC' | 'VERIFY' | 'FORCE_OVERWRITE' | 'RESTORE';

/** One line of `.lora-sync/history.jsonl` (the seed's fields). */
export interface HistoryEvent {
  /** ISO 8601 UTC. */
  time: string;
  event: HistoryEventKind;
  lora_id: string;
  name: string;
  /** The trainer's match index when given. */
  match_idx?: number;
  /** e.g. LEARNING_UPDATE, FULL_SYNC, MANUAL, ROLE_CHANGE. */
  reason?: string;
  synced_copies?: number;
  failed_copies?: number;
  skipped_copies?: number;
  total_copies?: number;
  /** VERIFY only. */
  consistent?: boolean;
  /** Relative paths concerned (forced overwrite: the file; failures: the failed ones). */
  files?: string[];
  /** FORCE_OVERWRITE: where the old file was kept. */
  backup?: string;
  /** Free-form extras (SYNC: `failures`, path → reason). */
  details?: Record<string, unknown>;
}

/** A file whose status changed (before undefined: new file; after undefined: gone or no longer a LoRA file). */
export interface StatusChange {
  path: string;
  before?: ReportStatus;
  after?: ReportStatus;
}

/** What a scan found. */
export interface ScanSummary {
  /** Files indexed. */
  files: number;
  /** Files read (new or changed); the rest came from the cache. */
  read: number;
  reused: number;
  removed: number;
  /** Why the cache was not used, when it was not. */
  cacheNote?: string;
  changes: StatusChange[];
  /** Where the scan's time went (wall ms): listing, keys (lstat), reading, statuses, the cache write. */
  timings?: ScanPhases;
}

export interface ScanPhases {
  list: number;
  keys: number;
  read: number;
  statuses: number;
  cache: number;
}

/** "list 42, keys 33, read 836, statuses 38, cache 81 (wall ms)": scans' phases, added up, as logs show them. */
export function scanPhasesText(all: ScanPhases[]): string {
  const sum = (p: keyof ScanPhases) => thousands(all.reduce((n, t) => n + t[p], 0));
  return `list ${sum('list')}, keys ${sum('keys')}, read ${sum('read')}, statuses ${sum('statuses')}, cache ${sum('cache')} (wall ms)`;
}
