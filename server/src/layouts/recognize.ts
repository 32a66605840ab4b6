/**
 * Which layout a file is in: the recognizers in order of how specific their evidence is (an id, a
 * file name a library writes, a naming scheme, bare LoRA tensor names), then a few words on what
 * a file that is none of them is.
 */
import { recognizeDiffusers } from './diffusers';
import { recognizeKohya } from './kohya';
import { recognizePeft } from './peft';
import { recognizeSeed } from './seed';
import { recognizeStateDict } from './stateDict';
import { isLoraTensorName } from './tensorNames';
import type { LayoutInput, Recognition, Unrecognized } from './types';

export function recognize(input: LayoutInput, role: 'source' | 'copy'): Recognition {
  return (
    recognizeSeed(input, role) ??
    recognizePeft(input) ??
    recognizeDiffusers(input) ??
    recognizeKohya(input) ??
    recognizeStateDict(input, role) ??
    whyNot(input)
  );
}

const LYCORIS = /\.(hada_w[12]_[ab]|lokr_w[12](_[ab])?|oft_blocks|boft_blocks)$/;

/** What a file that is no LoRA is, in a few words. */
export function whyNot(input: LayoutInput): Unrecognized {
  const no = (why: string): Unrecognized => ({ layout: 'unrecognized', why });
  if (input.format === 'torchscript') return no('TorchScript module');
  const top = input.torchTop;
  if (top?.kind === 'dict') {
    const keys = new Set(top.keys);
    if (keys.has('state') && keys.has('param_groups')) return no('optimizer state');
    if (keys.has('last_epoch') || keys.has('base_lrs') || keys.has('_last_lr')) return no('scheduler state');
    if (keys.has('cpu') && (keys.has('python') || keys.has('numpy'))) return no('RNG state');
  }
  if (input.tensorNames.length === 0) return no('no tensors');
  if (input.tensorNames.some((n) => LYCORIS.test(n))) return no('LyCORIS network (LoHa/LoKr/OFT), not LoRA');
  // e.g. a trainer's {'weights': {...}, 'step': 5}: the tensors are there but the shape is not a LoRA file's.
  if (input.tensorNames.some(isLoraTensorName)) return no('LoRA tensors inside a dict that is not a state dict');
  return no('no LoRA tensor names');
}
