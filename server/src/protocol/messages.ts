/**
 * The custom requests and notifications between the LoRA Sync client and language server, with
 * their parameters and results. This folder (server/src/protocol/) is the only part of the server
 * the client may import (client/tsconfig.json fails the type check otherwise), so it holds plain
 * data types and imports nothing of the engine: the server maps engine values onto these types in
 * server/src/lsp/wire.ts.
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
import type { InspectHashes, InspectModel } from './inspect';
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
} from './reports';

/** The `loraSync.*` settings: the keys of `lora-sync.json`, which they override. */
export interface Settings {
  /** Globs of checkpoint files, relative to the folder. */
  include: string[];
  /** Globs skipped entirely (folders and files). */
  exclude: string[];
  /** A folder whose name contains one of these (any depth, NFC, case-sensitive) holds sources. */
  sourceFolders: string[];
  /** Metadata keys that belong to each copy and that a sync never overwrites. */
  copyKeys: string[];
  /** Metadata keys left out when comparing a copy's general metadata with its source's. */
  ignoreKeys: string[];
  /** Keep the old file under .lora-sync/backups/ before a forced overwrite. */
  backups: boolean;
  /** `onSourceChange`: when a source settles after a change, its STALE copies are synced. */
  autoSync: 'off' | 'onSourceChange';
  /** After every N source updates, a full verify and sync (0: never). */
  fullSyncEvery: number;
  /** File events are batched this long (ms). */
  debounceMs: number;
  /** A file counts as written once its size, mtime and inode are still this long (ms). */
  settleMs: number;
  /** Full reconcile with the disk every this many seconds (0: never). */
  reconcileSeconds: number;
}

/** Every setting key, in the order package.json contributes them. */
export const SETTING_KEYS = [
  'include',
  'exclude',
  'sourceFolders',
  'copyKeys',
  'ignoreKeys',
  'backups',
  'autoSync',
  'fullSyncEvery',
  'debounceMs',
  'settleMs',
  'reconcileSeconds',
] as const satisfies ReadonlyArray<keyof Settings>;

/** `initializationOptions` of the `initialize` request. */
export interface InitializationOptions {
  /** Settings the user set (unset ones left out, so they never mask lora-sync.json). Unknown keys are ignored. */
  settings?: Partial<Settings>;
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

/** What every per-folder result carries: the folder's URI and its path on disk. */
export interface FolderRef {
  uri: string;
  root: string;
}

/** Every LoRA and every checkpoint file of each folder. */
export interface CopyMapResult {
  /** `hint`: what to tell the user about the folder once (no source folder yet, and how to designate one). */
  folders: Array<FolderRef & { loras: LoraReport[]; files: FileReport[]; hint?: string }>;
}

export interface PlanParams extends FolderParams {
  /** One LoRA (id or name); none: every LoRA. */
  lora?: string;
  /** Plan diverged and mismatched copies as forced overwrites. */
  force?: boolean;
  /** Only these copies (workspace-relative paths, '/'): the others are left out of the plan. */
  copies?: string[];
}
/** The dry run: what a sync with the same parameters would do. */
export interface PlanResult {
  folders: Array<FolderRef & { plan: PlannedLora[] }>;
}

export interface SyncParams extends FolderParams, WorkDoneProgressParams {
  /** One LoRA (id or name); or `all: true`. One of the two is required. */
  lora?: string;
  all?: boolean;
  /** Overwrite diverged and mismatched copies (a backup is kept first, unless backups are off). */
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
export interface SyncSummary {
  /** Copies counted by outcome, all folders. */
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
  /** One LoRA (id or name); none: every LoRA. */
  lora?: string;
}
export interface VerifyResult {
  /** Every folder consistent. */
  is_consistent: boolean;
  folders: Array<FolderRef & { report: VerifyReport }>;
}

export interface StatsResult {
  folders: Array<FolderRef & { stats: Stats }>;
}

export interface HistoryParams extends FolderParams {
  /** The newest N events per folder. */
  limit?: number;
  /** One LoRA (id or name). */
  lora?: string;
}
export interface HistoryResult {
  /** Per folder, in the order of its history log. */
  folders: Array<FolderRef & { events: HistoryEvent[] }>;
}

export interface RescanParams extends FolderParams, WorkDoneProgressParams {}
export interface RescanResult {
  folders: Array<FolderRef & { summary: ScanSummary }>;
}

export type ServerState = 'starting' | 'ready' | 'working' | 'error';
export interface ServerStatus {
  state: ServerState;
  /** Why the state is `error` (one line per folder in error). */
  message?: string;
  /** Workspace folders hosted. */
  folders: number;
  /** LoRAs tracked, all folders. */
  loras: number;
  /** Files whose status needs attention (not SOURCE / IN_SYNC), all folders. */
  problems: number;
  /**
   * Things to tell the user once (a folder with LoRA files but no source folder, and how to designate
   * one); also published as one diagnostic on the folder's lora-sync.json. Absent when none.
   */
  hints?: string[];
}

/** Adds a folder to `sourceFolders` in its workspace folder's lora-sync.json (created if needed). */
export interface UseFolderAsSourceParams {
  /** The folder's `file:` URI, or `path` (absolute). */
  uri?: string;
  path?: string;
}
export interface UseFolderAsSourceResult extends FolderRef {
  /** The value added (the folder's path relative to the workspace folder) and the new list. */
  added: string;
  sourceFolders: string[];
}

export interface InspectParams {
  /** The file's `file:` URI; it must lie inside one of the workspace folders. */
  uri: string;
  /** Compare the values of every differing tensor, whatever the read budget (the inspector's "Compare all"). */
  compareAll?: boolean;
}
/** The ecosystem's hashes of one LoRA file (the Copy Map's tooltip asks when a file row is hovered). */
export interface FileHashesParams {
  /** The file's `file:` URI; it must be a LoRA file the index tracks (never a multi-GB base model). */
  uri: string;
}
/** null: not a tracked LoRA file, or it changed or vanished while it was read. */
export type FileHashesResult = InspectHashes | null;

/** One checkpoint as the inspector shows it; never holds tensor bytes. */
export type InspectResult = FolderRef & InspectModel;

/** `data` of each published diagnostic. */
export interface DiagnosticData {
  path: string;
  lora_id: string | null;
  role: 'source' | 'copy' | null;
  /** The source a copy was compared with. */
  source?: string;
  issues: Issue[];
}

export const CopyMapRequest = new RequestType<FolderParams | undefined, CopyMapResult, void>('loraSync/copyMap');
export const PlanRequest = new RequestType<PlanParams, PlanResult, void>('loraSync/plan');
export const SyncRequest = new RequestType<SyncParams, SyncSummary, void>('loraSync/sync');
export const VerifyRequest = new RequestType<VerifyParams, VerifyResult, void>('loraSync/verify');
export const StatsRequest = new RequestType<FolderParams | undefined, StatsResult, void>('loraSync/stats');
export const HistoryRequest = new RequestType<HistoryParams, HistoryResult, void>('loraSync/history');
export const RescanRequest = new RequestType<RescanParams | undefined, RescanResult, void>('loraSync/rescan');
export const InspectRequest = new RequestType<InspectParams, InspectResult, void>('loraSync/inspect');
export const FileHashesRequest = new RequestType<FileHashesParams, FileHashesResult, void>('loraSync/fileHashes');
export const UseFolderAsSourceRequest = new RequestType<UseFolderAsSourceParams, UseFolderAsSourceResult, void>(
  'loraSync/useFolderAsSource',
);
export const ServerStatusRequest = new RequestType0<ServerStatus, void>('loraSync/serverStatus');
/** Server → client, whenever the server status changes. */
export const StatusChangedNotification = new NotificationType<ServerStatus>('loraSync/statusChanged');
