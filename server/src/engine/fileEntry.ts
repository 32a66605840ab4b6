/**
 * The entry: one checkpoint file as the engine sees it, a plain, serialisable record (it is what the
 * index caches) of its identity, role, tensor fingerprints, metadata digests and sync_info, and the
 * one way entries are made (one object layout for all). Reading a file into one is loraFile.ts.
 */
import type { CheckpointFormat } from '../formats/checkpoint';
import type { LayoutKind, TrainingProgress } from '../layouts/types';
import type { EngineConfig } from './config';
import { matchesSourceFolder } from './sourceFolders';

export interface TensorEntry {
  name: string;
  dtype: string;
  shape: number[];
  digest: string;
}

export interface SyncInfo {
  lastSyncMatch?: number;
  lastSyncTime?: string;
  reason?: string;
  /** What this engine wrote at its own last sync of the file: the tensors it was given. */
  engine?: { tensors: string; alg: string; source?: string };
}

export type EntryKind = 'lora' | 'unrecognized' | 'corrupt';

export interface FileEntry {
  /** Relative to the workspace root, '/' separators, NFC. */
  path: string;
  size: number;
  mtimeMs: number;
  /** Exact modification time (ns, decimal): what "unchanged since the plan" is checked against. */
  mtimeNs: string;
  ino: number;
  kind: EntryKind;
  format?: CheckpointFormat;
  role?: 'source' | 'copy';
  /** Why the file is corrupt: the reader's error code and message, or the records whose CRC failed. */
  error?: { code: string; message: string };
  /** Globals that would run code on torch.load (non-empty: UNSAFE). */
  unsafeGlobals: string[];
  loraId?: string;
  name?: string;
  /**
   * What the file itself says its LoRA is: its `metadata.id`, its layout's name (kohya
   * `ss_output_name`, the PEFT or diffusers folder) or its file name. The copy map may tie a copy to
   * another LoRA by its sync record or its content (copyMap.ts `identifiedBy`).
   */
  idFrom?: 'metadata' | 'filename' | 'layout';
  /**
   * Which layout the file is (seed dict, PEFT adapter, kohya, diffusers, plain state dict), from
   * layouts/recognize.ts; undefined for files that are not LoRAs.
   */
  layout?: LayoutKind;
  /** What a sync writes as one: the file itself, or (PEFT, diffusers) the folder holding it. Relative path. */
  unit?: { kind: 'file' | 'folder'; path: string };
  /** Where in its training run the file is (kohya epochs and steps, Trainer checkpoints). */
  version?: TrainingProgress;
  /** One training run (kohya `ss_session_id`): two runs of one name are two LoRAs. */
  session?: string;
  /** Unrecognized files: why the file is no LoRA, in a few words (`no LoRA tensor names`). */
  why?: string;
  /**
   * PEFT and diffusers units: the key (size:mtime ns:inode, or `none`) of the `adapter_config.json`
   * beside the file, whose keys are part of the general metadata: a change to it re-reads the file.
   */
  sideKey?: string;
  /**
   * PEFT and diffusers units: a digest of the `adapter_config.json` bytes (undefined: none beside the
   * file). The sync executor checks it to write the config byte for byte and only when unchanged.
   */
  configDigest?: string;
  /** Embedded ecosystem hashes (`sshs_model_hash`, ...) that disagree with the file's bytes. */
  hashIssues?: Array<{ key: string; detail: string }>;
  tensors: TensorEntry[];
  /** Digest of the sorted (name, dtype, shape, digest) list: equal means every tensor is equal. */
  tensorsDigest: string;
  /** Digest of the general metadata (copy keys and ignored keys left out). */
  metaDigest: string;
  /** Per general-metadata key digest, to say which keys differ. Shared between entries: read-only. */
  metaKeys: Record<string, string>;
  /** Per-copy keys the file holds. */
  copyKeys: string[];
  syncInfo: SyncInfo;
}

/**
 * An entry with every field, in one order (absent ones undefined): all entries then share one object
 * layout with the fields inside the object, which for 60,000 files is megabytes less than the layouts
 * that spreads and late additions give. Returns a new object.
 */
export function makeEntry(e: FileEntry): FileEntry {
  return {
    path: e.path,
    size: e.size,
    mtimeMs: e.mtimeMs,
    mtimeNs: e.mtimeNs,
    ino: e.ino,
    kind: e.kind,
    format: e.format,
    role: e.role,
    error: e.error,
    unsafeGlobals: e.unsafeGlobals,
    loraId: e.loraId,
    name: e.name,
    idFrom: e.idFrom,
    layout: e.layout,
    unit: e.unit,
    version: e.version,
    session: e.session,
    why: e.why,
    sideKey: e.sideKey,
    configDigest: e.configDigest,
    hashIssues: e.hashIssues,
    tensors: e.tensors,
    tensorsDigest: e.tensorsDigest,
    metaDigest: e.metaDigest,
    metaKeys: e.metaKeys,
    copyKeys: e.copyKeys,
    syncInfo: e.syncInfo,
  };
}

/** An entry that says nothing yet of the content: where readEntry starts, what the scanner reports for a file it cannot open. */
export function blankEntry(
  rel: string,
  cfg: EngineConfig,
  key: Pick<FileEntry, 'size' | 'mtimeNs' | 'ino'>,
): FileEntry {
  return makeEntry({
    path: rel,
    size: key.size,
    mtimeMs: msOfNs(key.mtimeNs),
    mtimeNs: key.mtimeNs,
    ino: key.ino,
    kind: 'corrupt',
    role: isSourcePath(rel, cfg) ? 'source' : 'copy',
    unsafeGlobals: [],
    tensors: [],
    tensorsDigest: '',
    metaDigest: '',
    metaKeys: {},
    copyKeys: [],
    syncInfo: {},
  });
}

/** A file in a source folder (sourceFolders.ts: a folder name containing a value, or a glob on the folder's path). */
export function isSourcePath(rel: string, cfg: EngineConfig): boolean {
  return matchesSourceFolder(rel, cfg.sourceFolders);
}

/** Whole milliseconds of a decimal nanosecond time (rounded down, as the bigint division did). */
export function msOfNs(ns: string): number {
  return /^\d{7,21}$/.test(ns) ? Number(ns.slice(0, -6)) : Number(BigInt(ns) / 1_000_000n);
}
