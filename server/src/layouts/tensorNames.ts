/**
 * Tensor-name patterns of the LoRA layouts. Names are matched on their dotted components, so a
 * module that merely contains "lora" in its path (`flora_head.weight`) is not taken for a LoRA.
 */

/** Components that only LoRA tensors have (PEFT, diffusers, kohya, the seed). */
const LORA_PARTS = new Set([
  'lora_A',
  'lora_B',
  'lora_down',
  'lora_up',
  'lora_embedding_A',
  'lora_embedding_B',
  'lora_magnitude_vector',
]);

/** diffusers' old attention processors: `...processor.to_q_lora.down.weight`, `lora_linear_layer.up`. */
const DIFFUSERS_OLD = /(^|\.)(\w+_lora|lora_linear_layer|lora)\.(down|up)\.weight$/;

export function isLoraTensorName(name: string): boolean {
  for (const part of name.split('.')) if (LORA_PARTS.has(part)) return true;
  return DIFFUSERS_OLD.test(name);
}

/**
 * kohya-ss / A1111 / ComfyUI: `lora_unet_<module>` or `lora_te[N]_<module>` with `.lora_down.weight`, `.lora_up.weight`,
 * `.alpha`, DoRA's `.dora_scale`, LoCon's `.lora_mid.weight`.
 */
const KOHYA =
  /^lora_(unet|te\d?|transformer)_[A-Za-z0-9_]+\.(lora_down\.weight|lora_up\.weight|lora_mid\.weight|alpha|dora_scale)$/;

export function isKohyaTensorName(name: string): boolean {
  return KOHYA.test(name);
}

/** PEFT saves `base_model.model.<module>.lora_A.weight` (the adapter name stripped). */
export function isPeftTensorName(name: string): boolean {
  return name.startsWith('base_model.model.') && isLoraTensorName(name);
}

/** diffusers' LoRA state dicts put every tensor under the component it adapts. */
const DIFFUSERS_PREFIX = /^(unet|transformer|text_encoder(_\d)?|prior)\./;

export function isDiffusersTensorName(name: string): boolean {
  return DIFFUSERS_PREFIX.test(name) && isLoraTensorName(name);
}

/** The share of names matching `test` (0 for none). */
export function shareOf(names: readonly string[], test: (n: string) => boolean): number {
  if (!names.length) return 0;
  let n = 0;
  for (const x of names) if (test(x)) n++;
  return n / names.length;
}
