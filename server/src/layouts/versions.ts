/**
 * Training progress: versions parsed from names and metadata, their order, and which file of a
 * LoRA's source folders is the source (the newest) and which are its earlier versions.
 *
 * Order, most trusted first: kohya `ss_steps`, `ss_epoch`, the step of a `checkpoint-<step>` folder
 * or `-step<N>` name, the epoch of a `-<NNNNNN>` name, `ss_training_finished_at`. A criterion decides
 * only when every file compared has it; files tied on it go on to the next one.
 */
import type { Recognized, TrainingProgress } from './types';

/** kohya's intermediate saves: `{name}-{epoch:06d}` and `{name}-step{step:08d}` (library/train_util.py). */
const EPOCH_SUFFIX = /^(.+)-(\d{6,})$/;
const STEP_SUFFIX = /^(.+)-step(\d{8,})$/;
const CHECKPOINT_DIR = /^checkpoint-(\d+)$/;

/** A file stem split into the LoRA's name and the version its kohya suffix gives. */
export function versionFromStem(stem: string): { base: string; nameEpoch?: number; nameStep?: number } {
  let m = STEP_SUFFIX.exec(stem);
  if (m) return { base: m[1], nameStep: Number(m[2]) };
  m = EPOCH_SUFFIX.exec(stem);
  if (m) return { base: m[1], nameEpoch: Number(m[2]) };
  return { base: stem };
}

/** The step of a transformers Trainer / accelerate `checkpoint-<step>` folder name. */
export function checkpointStepOf(folderName: string): number | undefined {
  const m = CHECKPOINT_DIR.exec(folderName);
  return m ? Number(m[1]) : undefined;
}

function num(s: string | undefined): number | undefined {
  if (s === undefined || s.trim() === '') return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

/** What kohya's `__metadata__` says about progress (values are strings there). */
export function progressFromMetadata(md: Readonly<Record<string, string>> | null | undefined): TrainingProgress {
  if (!md) return {};
  return { steps: num(md.ss_steps), epoch: num(md.ss_epoch), finishedAt: num(md.ss_training_finished_at) };
}

/** Drops undefined fields; undefined when nothing is left. */
export function compactProgress(p: TrainingProgress): TrainingProgress | undefined {
  const out: TrainingProgress = {};
  for (const [k, v] of Object.entries(p)) if (v !== undefined) out[k as keyof TrainingProgress] = v;
  return Object.keys(out).length ? out : undefined;
}

type Criterion = { label: string; of: (p: TrainingProgress) => number | undefined };

export const CRITERIA: readonly Criterion[] = [
  { label: 'ss_steps', of: (p) => p.steps },
  { label: 'ss_epoch', of: (p) => p.epoch },
  { label: 'step in its name', of: (p) => p.checkpointStep ?? p.nameStep },
  { label: 'epoch in its name', of: (p) => p.nameEpoch },
  { label: 'ss_training_finished_at', of: (p) => p.finishedAt },
];

/**
 * Compares two versions: < 0 when `a` is earlier. 0 when no criterion both have tells them apart.
 */
export function compareProgress(a: TrainingProgress | undefined, b: TrainingProgress | undefined): number {
  for (const c of CRITERIA) {
    const x = a && c.of(a);
    const y = b && c.of(b);
    if (x !== undefined && y !== undefined && x !== y) return x - y;
  }
  return 0;
}

/** A short label for messages: `step 500`, `epoch 8`, `checkpoint-500`. */
export function versionLabel(p: TrainingProgress | undefined): string | undefined {
  if (!p) return undefined;
  if (p.checkpointStep !== undefined) return `checkpoint-${p.checkpointStep}`;
  if (p.epoch !== undefined && p.nameStep === undefined) return `epoch ${p.epoch}`;
  if (p.steps !== undefined) return `step ${p.steps}`;
  if (p.nameStep !== undefined) return `step ${p.nameStep}`;
  if (p.nameEpoch !== undefined) return `epoch ${p.nameEpoch}`;
  if (p.finishedAt !== undefined) return `saved ${new Date(p.finishedAt * 1000).toISOString().slice(0, 16)}Z`;
  return undefined;
}

export interface Versioned<T> {
  file: T;
  version?: TrainingProgress;
  /** True for a file whose name carries no version mark (kohya's final save is `{name}.safetensors`). */
  unmarkedName?: boolean;
}

/**
 * A recognized file as `pickSource` wants it, keyed by its unit (file or folder). A name with no
 * epoch, step or checkpoint folder is "unmarked": the final save of kohya, or the adapter a Trainer
 * writes to output_dir at the end, beside its `checkpoint-<step>/` folders.
 */
export function versionedOf(r: Recognized): Versioned<string> {
  return { file: r.unit.path, version: r.version, unmarkedName: !nameMarked(r.version) };
}

export type SourcePick<T> =
  | { kind: 'picked'; source: T; versions: T[]; by: string }
  | { kind: 'unordered'; why: string; files: T[] };

/**
 * Among the files of one LoRA in source folders, the newest is the SOURCE and the others are its
 * VERSIONs. Unordered (→ DUPLICATE_SOURCE) when no criterion orders the newest ones.
 */
export function pickSource<T>(files: readonly Versioned<T>[]): SourcePick<T> {
  if (files.length === 0) return { kind: 'unordered', why: 'no files', files: [] };
  if (files.length === 1) return { kind: 'picked', source: files[0].file, versions: [], by: 'the only file' };
  let top = [...files];
  let by: string | undefined;
  for (const c of CRITERIA) {
    if (!top.every((f) => f.version && c.of(f.version) !== undefined)) continue;
    const max = Math.max(...top.map((f) => c.of(f.version!)!));
    const next = top.filter((f) => c.of(f.version!) === max);
    if (next.length < top.length) by = c.label;
    top = next;
    if (top.length === 1) break;
  }
  // kohya names intermediate saves `-000008` / `-step00000500` and the last one `{name}`: with no
  // other information, the one unmarked name among marked ones is the final save.
  if (top.length > 1 && !by) {
    const unmarked = top.filter((f) => f.unmarkedName);
    if (unmarked.length === 1 && top.every((f) => f.unmarkedName || nameMarked(f.version)))
      return finish(files, unmarked[0], 'the final save (no epoch or step in its name)');
  }
  if (top.length === 1) return finish(files, top[0], by ?? 'the only candidate');
  return {
    kind: 'unordered',
    why:
      top.length === files.length
        ? 'no progress to order them (no steps, epochs or training times they all carry)'
        : `${top.length} files are equally far in training`,
    files: top.map((f) => f.file),
  };
}

function nameMarked(p: TrainingProgress | undefined): boolean {
  return !!p && (p.nameEpoch !== undefined || p.nameStep !== undefined || p.checkpointStep !== undefined);
}

function finish<T>(all: readonly Versioned<T>[], chosen: Versioned<T>, by: string): SourcePick<T> {
  return { kind: 'picked', source: chosen.file, versions: all.filter((f) => f !== chosen).map((f) => f.file), by };
}

/**
 * The message of a copy equal to an earlier version:
 * `stale: equal to epoch 8 (pixel_style-000008.safetensors); the source is at epoch 10`.
 */
export function staleVersionMessage(
  version: { file: string; progress?: TrainingProgress },
  source: { file?: string; progress?: TrainingProgress },
): string {
  const was = versionLabel(version.progress) ?? 'an earlier version';
  const now = versionLabel(source.progress);
  // A source without progress of its own (PEFT's final adapter beside its Trainer checkpoints) is named instead.
  const where = now
    ? `; the source is at ${now}`
    : source.file
      ? `; the source is the final save (${source.file})`
      : '';
  return `stale: equal to ${was} (${version.file})${where}`;
}
