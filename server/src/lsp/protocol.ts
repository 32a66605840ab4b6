/**
 * The custom requests and notifications between the LoRA Sync client and language server, typed
 * once. The client imports this module too, so it brings in engine *types* only (erased at build
 * time) and no node-only code.
 *
 * Multi-root: every request may name one workspace folder (`folder`, its URI); without it the
 * request covers every folder, and results list one entry per folder. A folder whose configuration
 * is invalid is left out (`loraSync/serverStatus` says why).
 */
import {
  NotificationType,
  RequestType,
  RequestType0,
  type WorkDoneProgressParams,
} from 'vscode-languageserver-protocol';
import type { FileReport, LoraReport, ScanSummary, Stats, VerifyReport } from '../engine/workspace';
import type { PlannedLora } from '../engine/syncPlanner';
import type { CopyOutcome } from '../engine/syncExecutor';
import type { HistoryEvent } from '../engine/history';
import type { EngineConfig } from '../engine/config';
import type { InspectModel } from '../engine/inspectModel';

/** `initializationOptions` of the `initialize` request. */
export interface InitializationOptions {
  /** Overrides of `lora-sync.json`, same keys (the `loraSync.*` settings). Unknown keys are ignored. */
  settings?: Partial<EngineConfig>;
  /** Watch the folders for changes (default true); false = periodic reconcile only. */
  watch?: boolean;
  /** Poll instead of native file events (network drives). */
  usePolling?: boolean;
  /**
   * Read and report, never write: an untrusted workspace. Sync requests are refused and auto-sync
   * is off whatever the settings or lora-sync.json say.
   */
  readOnly?: boolean;
}

/** Restricts a request to one workspace folder (its URI, as in `workspaceFolders`). */
export interface FolderParams {
  folder?: string;
}

/** What every per-folder result carries. */
export interface FolderRef {
  uri: string;
  root: string;
}

export interface CopyMapResult {
  folders: Array<FolderRef & { loras: LoraReport[]; files: FileReport[] }>;
}

export interface LoraDetailsParams extends FolderParams {
  /** A LoRA id, or its name when that is unambiguous. */
  id: string;
}
export interface LoraDetailsResult extends FolderRef {
  id: string;
  name: string;
  source: string | null;
  /** Sources, copies and unreadable files of the LoRA, with status, message and issues. */
  files: FileReport[];
}

export interface PlanParams extends FolderParams {
  lora?: string;
  force?: boolean;
  /** Only these copies (workspace-relative paths, '/'): the others are left out of the plan. */
  copies?: string[];
}
export interface PlanResult {
  folders: Array<FolderRef & { plan: PlannedLora[] }>;
}

export interface SyncParams extends FolderParams, WorkDoneProgressParams {
  /** One LoRA (id or name); or `all: true`. One of the two is required. */
  lora?: string;
  all?: boolean;
  force?: boolean;
  /** History reason; default FULL_SYNC for all, MANUAL for one LoRA. */
  reason?: string;
  /** The trainer's match index recorded in each copy's sync_info. */
  match?: number;
  /**
   * Only these copies of the LoRA(s) (workspace-relative paths, '/'; the inspector's "Sync this
   * copy"): the others are not planned, not written and not counted.
   */
  copies?: string[];
}
export interface CopyOutcomeSummary {
  path: string;
  outcome: CopyOutcome;
  reason: string;
  backup?: string;
}
export interface LoraSyncSummary {
  id: string;
  name: string;
  source?: string;
  copies: CopyOutcomeSummary[];
}
export interface SyncSummary {
  synced: number;
  failed: number;
  skipped: number;
  refused: number;
  /** The request was cancelled: what was written stays written. */
  cancelled: boolean;
  /** `historyError`: the copies were written but the history event could not be (e.g. no space left). */
  folders: Array<FolderRef & { loras: LoraSyncSummary[]; historyError?: string }>;
}

export interface VerifyParams extends FolderParams, WorkDoneProgressParams {
  lora?: string;
}
export interface VerifyResult {
  is_consistent: boolean;
  folders: Array<FolderRef & { report: VerifyReport }>;
}

export interface StatsResult {
  folders: Array<FolderRef & { stats: Stats }>;
}

export interface HistoryParams extends FolderParams {
  limit?: number;
  lora?: string;
}
export interface HistoryResult {
  folders: Array<FolderRef & { events: HistoryEvent[] }>;
}

export interface RescanParams extends FolderParams, WorkDoneProgressParams {}
export interface RescanResult {
  folders: Array<FolderRef & { summary: ScanSummary }>;
}

export type ServerState = 'starting' | 'ready' | 'working' | 'error';
export interface ServerStatus {
  state: ServerState;
  message?: string;
  folders: number;
  /** LoRAs tracked, all folders. */
  loras: number;
  /** Files whose status needs attention (not SOURCE / IN_SYNC), all folders. */
  problems: number;
}

export interface InspectParams {
  /** The file's `file:` URI; it must lie inside one of the workspace folders. */
  uri: string;
  /** Compare the values of every differing tensor, whatever the read budget (the inspector's "Compare all"). */
  compareAll?: boolean;
}
/** One checkpoint as the inspector shows it (see engine/inspectModel.ts); never holds tensor bytes. */
export type InspectResult = FolderRef & InspectModel;

/** `data` of each published diagnostic. */
export interface DiagnosticData {
  path: string;
  lora_id: string | null;
  role: 'source' | 'copy' | null;
  source?: string;
  issues: FileReport['issues'];
}

export const CopyMapRequest = new RequestType<FolderParams | undefined, CopyMapResult, void>('loraSync/copyMap');
export const LoraDetailsRequest = new RequestType<LoraDetailsParams, LoraDetailsResult, void>('loraSync/loraDetails');
export const PlanRequest = new RequestType<PlanParams, PlanResult, void>('loraSync/plan');
export const SyncRequest = new RequestType<SyncParams, SyncSummary, void>('loraSync/sync');
export const VerifyRequest = new RequestType<VerifyParams, VerifyResult, void>('loraSync/verify');
export const StatsRequest = new RequestType<FolderParams | undefined, StatsResult, void>('loraSync/stats');
export const HistoryRequest = new RequestType<HistoryParams, HistoryResult, void>('loraSync/history');
export const RescanRequest = new RequestType<RescanParams | undefined, RescanResult, void>('loraSync/rescan');
export const InspectRequest = new RequestType<InspectParams, InspectResult, void>('loraSync/inspect');
export const ServerStatusRequest = new RequestType0<ServerStatus, void>('loraSync/serverStatus');
/** Server → client, whenever the server status changes. */
export const StatusChangedNotification = new NotificationType<ServerStatus>('loraSync/statusChanged');
