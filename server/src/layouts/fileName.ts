/**
 * Names from paths. The seed writes copies as `<name>_<6 hex>.pt` (make_workspace.py, demo/
 * seedWorkspace.ts); only that exact suffix is a copy mark, so `pixel_style.safetensors` stays
 * `pixel_style` and `pixel_style_edit.safetensors` is a LoRA of its own.
 */

const CHECKPOINT_EXT = /\.(pt|pth|bin|ckpt|safetensors)$/i;
/** The seed's copy suffix: an underscore and 6 lower-case hex digits. */
const SEED_COPY_SUFFIX = /^(.+)_[0-9a-f]{6}$/;

export function baseName(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? path : path.slice(i + 1);
}

/** The folder part of a '/'-separated path ('' at the root). */
export function dirName(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

/** The file name without a checkpoint extension. */
export function fileStem(path: string): string {
  return baseName(path).replace(CHECKPOINT_EXT, '');
}

/**
 * The LoRA name a file's name gives: a source is `<name>.<ext>`; a copy is `<name>_<6 hex>.<ext>`
 * as the seed writes it, or just `<name>.<ext>` (a copy under its own name, as UIs keep them).
 */
export function nameFromFileName(file: string, role: 'source' | 'copy'): string {
  const stem = fileStem(file);
  if (role === 'source') return stem;
  const m = SEED_COPY_SUFFIX.exec(stem);
  return m ? m[1] : stem;
}
