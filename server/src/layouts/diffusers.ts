/**
 * diffusers LoRAs: `pytorch_lora_weights.safetensors` (or `.bin`) in a folder, tensors under `unet.`,
 * `transformer.` or `text_encoder.` with `lora.down`/`lora.up` (old attention processors) or
 * `lora_A`/`lora_B` (PEFT backend; newer saves add `lora_adapter_metadata` to `__metadata__`). The
 * folder is the unit and names the LoRA; a training script's `checkpoint-<step>/` is a version of the
 * folder above it, as for PEFT.
 */
import { baseName, dirName } from './fileName';
import { adapterName } from './peft';
import { isDiffusersTensorName, isLoraTensorName, shareOf } from './tensorNames';
import type { LayoutInput, Recognition } from './types';

const WEIGHTS_FILE = /^pytorch_lora_weights\.(safetensors|bin)$/;

export function recognizeDiffusers(input: LayoutInput): Recognition | undefined {
  if (!WEIGHTS_FILE.test(baseName(input.path))) return undefined;
  if (shareOf(input.tensorNames, isLoraTensorName) === 0)
    return { layout: 'unrecognized', why: 'no LoRA tensor names' };
  const folder = dirName(input.path);
  const { name, step } = adapterName(folder);
  const prefixed = shareOf(input.tensorNames, isDiffusersTensorName) > 0;
  return {
    layout: 'diffusers',
    name: name === 'adapter_model' ? 'pytorch_lora_weights' : name,
    unit: { kind: 'folder', path: folder },
    version: step === undefined ? undefined : { checkpointStep: step },
    reason: prefixed ? undefined : 'tensor names not under unet./transformer./text_encoder.',
  };
}
