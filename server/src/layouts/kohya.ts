/**
 * kohya-ss sd-scripts LoRAs, the files A1111, Forge and ComfyUI load: tensor names `lora_unet_*`,
 * `lora_te*_*` with `.lora_down.weight`, `.lora_up.weight`, `.alpha`. The name is `ss_output_name`
 * when the file carries it (so a renamed copy in `models/loras` keeps its LoRA), else the file name
 * without kohya's `-000008` / `-step00000500` suffix. `ss_session_id` marks one training run.
 */
import { fileStem } from './fileName';
import { isKohyaTensorName, shareOf } from './tensorNames';
import type { LayoutInput, Recognized } from './types';
import { compactProgress, progressFromMetadata, versionFromStem } from './versions';

export function recognizeKohya(input: LayoutInput): Recognized | undefined {
  // Every tensor in kohya's naming: a mixed file is some other tool's.
  if (input.tensorNames.length === 0 || shareOf(input.tensorNames, isKohyaTensorName) < 1) return undefined;
  const md = input.metadata ?? undefined;
  const fromName = versionFromStem(fileStem(input.path));
  const outputName = md?.ss_output_name?.trim() || undefined;
  // A name suffix counts as a version only when it is kohya's own: no ss_output_name, or the file
  // name is that output name plus the suffix (a LoRA called `photo-202405` is not epoch 202405).
  const suffixIsVersion = !outputName || fromName.base === outputName;
  return {
    layout: 'kohya',
    name: outputName ?? fromName.base,
    unit: { kind: 'file', path: input.path },
    version: compactProgress({
      ...progressFromMetadata(md),
      nameEpoch: suffixIsVersion ? fromName.nameEpoch : undefined,
      nameStep: suffixIsVersion ? fromName.nameStep : undefined,
    }),
    session: md?.ss_session_id || undefined,
  };
}
