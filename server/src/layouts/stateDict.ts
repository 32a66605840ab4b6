/**
 * Plain state dicts (`.pt`, `.pth`, `.bin`, `.ckpt`, `.safetensors`) whose tensor names are LoRA
 * names: the LoRA is named by the file (the seed's copy suffix stripped for copies).
 */
import { nameFromFileName } from './fileName';
import { isLoraTensorName, shareOf } from './tensorNames';
import type { LayoutInput, Recognized } from './types';

export function recognizeStateDict(input: LayoutInput, role: 'source' | 'copy'): Recognized | undefined {
  if (input.format === 'torchscript') return undefined;
  if (input.format !== 'safetensors' && input.torchTop?.kind !== 'state-dict') return undefined;
  if (shareOf(input.tensorNames, isLoraTensorName) === 0) return undefined;
  return { layout: 'state-dict', name: nameFromFileName(input.path, role), unit: { kind: 'file', path: input.path } };
}
