/**
 * Hugging Face PEFT adapters: a folder with `adapter_model.safetensors` (or `.bin`, a torch-pickled
 * state dict) and `adapter_config.json`. The folder is the unit and its name the LoRA's name; an
 * adapter not named `default` is saved in a subfolder named after it. A transformers Trainer's
 * `checkpoint-<step>/` folder is a version of the adapter of the folder above it, whether the adapter
 * files sit in it (`output_dir/checkpoint-500/adapter_model.safetensors`) or in a named adapter's
 * subfolder of it.
 */
import { baseName, dirName } from './fileName';
import { isLoraTensorName, shareOf } from './tensorNames';
import type { LayoutInput, Recognition } from './types';
import { checkpointStepOf } from './versions';

const ADAPTER_FILE = /^adapter_model\.(safetensors|bin)$/;
export const ADAPTER_CONFIG = 'adapter_config.json';
/** LoRA-family PEFT types whose weights are LoRA tensors. */
const LORA_TYPES = new Set(['LORA', 'ADALORA']);

export function isPeftAdapterFile(path: string): boolean {
  return ADAPTER_FILE.test(baseName(path));
}

export function recognizePeft(input: LayoutInput): Recognition | undefined {
  if (!isPeftAdapterFile(input.path)) return undefined;
  const folder = dirName(input.path);
  const hasConfig = input.siblings.includes(ADAPTER_CONFIG);
  const peftType = peftTypeOf(input.adapterConfig);
  if (peftType && !LORA_TYPES.has(peftType))
    return { layout: 'unrecognized', why: `PEFT ${peftType} adapter, not LoRA` };
  if (shareOf(input.tensorNames, isLoraTensorName) === 0)
    return { layout: 'unrecognized', why: 'no LoRA tensor names' };
  const { name, step } = adapterName(folder);
  return {
    layout: 'peft',
    name,
    unit: { kind: 'folder', path: folder },
    version: step === undefined ? undefined : { checkpointStep: step },
    reason: hasConfig ? undefined : `no ${ADAPTER_CONFIG} beside it`,
  };
}

/** The adapter's name and Trainer step from the folder holding the adapter files. */
export function adapterName(folder: string): { name: string; step?: number } {
  const own = baseName(folder);
  const parentFolder = dirName(folder);
  const parent = baseName(parentFolder);
  const step = checkpointStepOf(own);
  // output_dir/checkpoint-500/: the adapter is output_dir's.
  if (step !== undefined) return { name: parent || own, step };
  // output_dir/checkpoint-500/<adapter name>/: a named adapter inside a Trainer checkpoint.
  const parentStep = checkpointStepOf(parent);
  if (parentStep !== undefined) return { name: own, step: parentStep };
  return { name: own || 'adapter_model' };
}

function peftTypeOf(config: unknown): string | undefined {
  if (!config || typeof config !== 'object') return undefined;
  const t = (config as Record<string, unknown>).peft_type;
  return typeof t === 'string' ? t.toUpperCase() : undefined;
}
