/**
 * Builds LoRA checkpoints the way the seed's trainer saves them (`{'lora_params': {...}, 'metadata': {...}}`)
 * as pickle trees plus raw storage bytes, for the demo and benchmark workspaces. Written with the
 * project's own writer; real torch loads them (the interop suite checks).
 */
import * as N from '../formats/pickle/nodes';
import type { PyNode } from '../formats/pickle/nodes';
import { type TorchDtype, storageClassOf } from '../formats/dtypes';

/** Globals and strings shared the way Python's memo shares them (one object, many references). */
export class TreeBuilder {
  private readonly rebuild = N.global('torch._utils', '_rebuild_tensor_v2');
  private readonly ordered = N.global('collections', 'OrderedDict');
  private readonly storageTag = N.str('storage');
  private readonly cpu = N.str('cpu');
  private readonly storageClasses = new Map<string, PyNode>();
  private nextKey = 0;
  readonly storages = new Map<string, Uint8Array>();

  tensor(dtype: TorchDtype, shape: number[], data: Uint8Array): PyNode {
    const key = String(this.nextKey++);
    this.storages.set(key, data);
    const cls = storageClassOf(dtype);
    let clsNode = this.storageClasses.get(cls);
    if (!clsNode) this.storageClasses.set(cls, (clsNode = N.global('torch', cls)));
    const numel = shape.reduce((a, b) => a * b, 1);
    const stride = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    const pid: N.PyPersId = {
      kind: 'persid',
      binary: true,
      pid: N.tuple([this.storageTag, clsNode, N.str(key), this.cpu, N.int(numel)]),
    };
    const hooks: N.PyObject = { kind: 'object', how: 'reduce', callable: this.ordered, args: N.tuple([]) };
    return {
      kind: 'object',
      how: 'reduce',
      callable: this.rebuild,
      args: N.tuple([
        pid,
        N.int(0),
        N.tuple(shape.map((d) => N.int(d))),
        N.tuple(stride.map((d) => N.int(d))),
        N.bool(false),
        hooks,
      ]),
    };
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
