/**
 * What the layout recognizers see of one file, and what they say about it. The input is plain data
 * the engine has once it opened a checkpoint's header (see describe.ts), so recognition is pure.
 */

export type LayoutFormat = 'torch-zip' | 'torch-legacy' | 'torchscript' | 'safetensors';

/** The top level of a torch pickle, as far as layouts care. */
export type TorchTop =
  /** The seed trainer's dict: `lora_params` and/or `metadata` with an `id`. */
  | { kind: 'seed'; id?: string; name?: string }
  /** A dict of tensors (keys are the tensor names), as `torch.save(state_dict)` writes. */
  | { kind: 'state-dict' }
  /** Any other dict: its top-level keys say what it is (optimizer, scheduler, RNG state). */
  | { kind: 'dict'; keys: string[] }
  | { kind: 'other' };

export interface LayoutInput {
  /** Relative to the workspace root, '/' separators. */
  path: string;
  format: LayoutFormat;
  /** Tensor names: safetensors header keys; torch: dotted paths in the pickled object. */
  tensorNames: readonly string[];
  /** safetensors `__metadata__` (string → string), if any. */
  metadata?: Readonly<Record<string, string>> | null;
  /** Torch formats only. */
  torchTop?: TorchTop;
  /** Names of the other entries in the file's folder (files and folders, no paths). */
  siblings: readonly string[];
  /** `adapter_config.json` beside the file, parsed, when it is there and is JSON. */
  adapterConfig?: unknown;
}

export type LayoutKind = 'seed' | 'peft' | 'kohya' | 'diffusers' | 'state-dict';

/** A position in training: what the versions module orders by. All optional. */
export interface TrainingProgress {
  /** kohya `ss_steps`. */
  steps?: number;
  /** kohya `ss_epoch`. */
  epoch?: number;
  /** `checkpoint-<step>` folder of a transformers Trainer / accelerate run. */
  checkpointStep?: number;
  /** kohya `{name}-step{step:08d}` file name. */
  nameStep?: number;
  /** kohya `{name}-{epoch:06d}` file name. */
  nameEpoch?: number;
  /** kohya `ss_training_finished_at` (seconds since the epoch). */
  finishedAt?: number;
}

export interface Recognized {
  layout: LayoutKind;
  /** The LoRA's name (what copies are matched by when there is no id). */
  name: string;
  /** What is synced as one: the file itself, or the folder holding it (PEFT, diffusers). */
  unit: { kind: 'file' | 'folder'; path: string };
  /** Where in its training run this file is. Undefined: no progress information. */
  version?: TrainingProgress;
  /** One training run (kohya `ss_session_id`). */
  session?: string;
  /** The seed's `metadata.id`. */
  id?: string;
  /** A few words on something odd about the match (e.g. a missing adapter_config.json). */
  reason?: string;
}

export interface Unrecognized {
  layout: 'unrecognized';
  /** A few words: 'no LoRA tensor names', 'optimizer state', ... */
  why: string;
}

export type Recognition = Recognized | Unrecognized;
