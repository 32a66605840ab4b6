/**
 * The seed trainer's checkpoints: a torch dict with `lora_params` and `metadata.id`, or a
 * safetensors file whose `__metadata__` has an `id` (what the engine recognizes today).
 */
import { nameFromFileName } from './fileName';
import type { LayoutInput, Recognized } from './types';

export function recognizeSeed(input: LayoutInput, role: 'source' | 'copy'): Recognized | undefined {
  const top = input.torchTop;
  const md = input.metadata;
  let id: string | undefined;
  let name: string | undefined;
  if (input.format !== 'safetensors' && input.format !== 'torchscript' && top?.kind === 'seed') {
    id = top.id;
    name = top.name;
  } else if (input.format === 'safetensors' && md?.id) {
    id = md.id;
    name = md.name;
  } else return undefined;
  return {
    layout: 'seed',
    name: name ?? nameFromFileName(input.path, role),
    unit: { kind: 'file', path: input.path },
    id,
  };
}
