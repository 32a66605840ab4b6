/**
 * Builds LoRA checkpoints the way the seed's trainer saves them (`{'lora_params': {...}, 'metadata': {...}}`)
 * as pickle trees plus raw storage bytes, for the demo and benchmark workspaces. Written with the
 * project's own writer; real torch loads them (the interop suite checks).
 */
import * as N from '../formats/pickle/nodes';
import type { PyNode } from '../formats/pickle/nodes';
import type { TorchDtype } from '../formats/dtypes';
import { TensorNodes } from '../formats/torch/tensorNodes';

/** Tensors and their storage bytes, as the seed's trainer saves them (formats/torch/tensorNodes.ts). */
export class TreeBuilder {
  private readonly nodes = new TensorNodes();
  private nextKey = 0;
  readonly storages = new Map<string, Uint8Array>();

  tensor(dtype: TorchDtype, shape: number[], data: Uint8Array): PyNode {
    const key = String(this.nextKey++);
    this.storages.set(key, data);
    return this.nodes.tensor(dtype, shape, key);
  }
}

/** A small deterministic PRNG (mulberry32): the same seed gives the same workspace on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomF32(rand: () => number, n: number, scale = 0.02): Uint8Array {
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = (rand() * 2 - 1) * scale;
  return new Uint8Array(f.buffer);
}

/** Turns a plain JS value into pickle nodes: numbers with a fraction or marked float become floats. */
export function py(v: unknown): PyNode {
  if (v === null || v === undefined) return N.none();
  if (typeof v === 'boolean') return N.bool(v);
  if (typeof v === 'bigint') return N.int(v);
  if (typeof v === 'number') return Number.isInteger(v) ? N.int(v) : N.float(v);
  if (typeof v === 'string') return N.str(v);
  if (v instanceof PyFloatValue) return N.float(v.value);
  if (Array.isArray(v)) return N.list(v.map(py));
  if (typeof v === 'object' && 'kind' in (v as object)) return v as PyNode;
  return N.dict(Object.entries(v as Record<string, unknown>).map(([k, x]) => [N.str(k), py(x)]));
}

/** Marks an integral number as a Python float (`1.0`). */
export class PyFloatValue {
  constructor(readonly value: number) {}
}
export const pyFloat = (v: number) => new PyFloatValue(v);
