/**
 * `loraSync/inspect`'s answer: one checkpoint as the LoRA inspector shows it (built by
 * server/src/lsp/views/inspectModel.ts). Plain JSON for a webview; never holds tensor bytes.
 */
import type { Issue } from './reports';
import type { ReportStatus } from './statusTable';

export type CheckpointFormat = 'torch-zip' | 'torch-legacy' | 'torchscript' | 'safetensors';

/** source / copy: a readable LoRA; unreadable: corrupt or cannot be opened; not-lora: a checkpoint that is no LoRA, or no checkpoint. */
export type InspectRole = 'source' | 'copy' | 'unreadable' | 'not-lora';

export type TensorDiffKind = 'equal' | 'differs' | 'shape' | 'dtype' | 'missing' | 'extra';

/** One tensor of a copy against the source tensor of the same name. */
export interface TensorDiff {
  name: string;
  kind: TensorDiffKind;
  /** `differs`: true when the values were compared element by element, false when only the digests say so. */
  compared?: boolean;
  /** Largest |copy − source| over elements that are numbers on both sides; 'inf' when one side is ±inf. */
  maxAbsDiff?: number | 'inf';
  /** Elements whose values differ (NaN on one side only included). */
  differing?: number;
  numel?: number;
  /** Elements that are NaN on exactly one side. */
  nanMismatches?: number;
  /** Why the values were not compared, or what an odd result means. */
  note?: string;
  /** `shape` / `dtype` / `missing`: the source's dtype and shape. */
  source?: { dtype: string; shape: number[] };
}

/** A row of the tensor table. */
export interface TensorRow {
  /** The index's name (`lora_params.` left off); for a file that is no LoRA, the dotted path. */
  name: string;
  /** As torch spells it: `float32`, `bfloat16`, ... */
  dtype: string;
  shape: number[];
  numel: number;
  bytes: number;
  /** From the index; absent when the file is not a readable LoRA. */
  digest?: string;
  /** An `nn.Parameter`. */
  parameter?: boolean;
  /** A strided view of a larger storage. */
  view?: boolean;
  /** Only in the source (a copy's `missing` tensor): the row describes the source's tensor. */
  absent?: boolean;
  /** A copy's tensor against its source's. */
  diff?: TensorDiff;
}

/** A node of the object tree (the pickle's object, or a safetensors file's `__metadata__`). */
export interface MetaNode {
  /** Key in the parent mapping (a Python repr for non-str keys) or index in a sequence. */
  key?: string;
  /** Python type: `dict`, `list`, `tuple`, `set`, `str`, `int`, `float`, `bool`, `None`, `bytes`, `datetime`, `numpy.float64`, `tensor`, `Parameter`, or `module.name` of another object. */
  type: string;
  /** Leaf value (or a summary of a container left closed). */
  value?: string;
  children?: MetaNode[];
  /** Children (or characters of a string) left out. */
  more?: number;
  /** `copy`: a per-copy key a sync never overwrites; `ignored`: left out of the comparison; `differs`: differs from the source. */
  mark?: 'copy' | 'ignored' | 'differs';
}

export interface Fitness {
  /** Where it was found: `metadata.fitness_history` or `fitness_history`. */
  path: string;
  /** The last values (at most 5,000); null where an item is not a finite number. */
  values: Array<number | null>;
  /** Items in the file. */
  total: number;
}

/** How a copy's tensors were compared with its source's. */
export interface DiffInfo {
  /** The source compared with (relative path). */
  against: string;
  /** Tensors per kind of difference. */
  counts: Record<TensorDiffKind, number>;
  /** Tensor bytes read, both files. */
  bytesRead: number;
  /** `differs` tensors known from digests only. */
  notCompared: number;
  /** The read budget (null: unlimited). */
  budgetBytes: number | null;
  /** Why no tensor values were compared at all (file changing, source unreadable). */
  note?: string;
}

/**
 * The hashes the LoRA ecosystem shows for a file (server/src/layouts/ecosystemHashes.ts), full lower-case hex.
 * `autoV2`: SHA-256 of the whole file (A1111, Civitai show its first 10 hex); `autoV3`: SHA-256 of a
 * safetensors file's data section (kohya's addnet hash, shown as 12 hex); `sha256`: the whole file's.
 * `embedded`: each hash key the file's own metadata carries (`sshs_model_hash`, `sshs_legacy_hash`,
 * `modelspec.hash_sha256`), its value, and whether it is right for this file.
 */
export interface EcosystemHashes {
  autoV2?: string;
  autoV3?: string;
  sha256?: string;
  embedded?: Array<{ key: string; value: string; ok: boolean }>;
}

export interface InspectModel {
  /** Relative to the workspace folder, '/', NFC. */
  path: string;
  format: CheckpointFormat | null;
  size: number;
  /** ISO time of the last modification. */
  mtime: string;
  /** In the index (false: outside include/exclude or in a hidden folder; shown for inspection only). */
  tracked: boolean;
  /** The file on disk is not the one the index last read (a trainer writing it): the view will follow. */
  changedOnDisk: boolean;
  /** `from`: where the id comes from (its metadata, or its file name). */
  identity: { id: string | null; name: string | null; from: 'metadata' | 'filename' | null };
  role: InspectRole;
  /** What its folder makes it: a source folder or anywhere else. */
  place: 'source' | 'copy';
  /** Null when the file is not tracked. */
  status: ReportStatus | null;
  /** One sentence (the diagnostics' message). */
  message: string;
  issues: Issue[];
  /** The source a copy is compared with: relative path, absolute path on disk (to open and watch it), its status. */
  source: { path: string; abs: string; status: ReportStatus | null } | null;
  /** The file's last `sync_info`; `byLoraSync`: it carries LoRA Sync's own record. */
  syncInfo: { lastSyncMatch?: number; lastSyncTime?: string; reason?: string; byLoraSync: boolean } | null;
  /** The reader's typed error (FormatError code, CRC_MISMATCH, or an I/O code). */
  error: { code: string; message: string } | null;
  /** `unsafe`: each global outside the allowlist, and why it is refused. */
  safety: { safe: boolean; unsafe: Array<{ global: string; detail: string }> };
  /** The digest algorithm of `digest` in the rows. */
  digestAlg: string;
  tensors: TensorRow[];
  /** Rows left out of `tensors` (over 5,000). */
  tensorsLeftOut: number;
  metadata: MetaNode | null;
  fitness: Fitness | null;
  /** Copies with a readable source only. */
  diff: DiffInfo | null;
  /** The configured copy keys and ignored keys (the tree's legend). */
  copyKeys: string[];
  ignoreKeys: string[];
  /** Absent when not computed (not a checkpoint, unreadable, or a server without layouts). */
  hashes?: EcosystemHashes;
}
