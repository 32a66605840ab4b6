/**
 * Per-tensor comparison of a copy with its source, for the inspector. Tensors are paired by name:
 * equal digests (with dtype and shape) are `equal` without reading a byte; a shape or dtype change,
 * a missing or an extra tensor is said as such; a tensor whose bytes differ is streamed from both
 * files in lockstep, in bounded chunks, and reported with its largest absolute difference and the
 * number of elements that differ.
 *
 * Bounds: memory is two chunks (default 1 MiB each) whatever the tensor size; total bytes read are
 * capped by `budgetBytes` (both files together, default 256 MiB) unless `unlimited`, so a view of a
 * 200 MB adapter costs at most about a quarter of a second of reading. A pair that does not fit the
 * remaining budget is `differs` with `compared: false` (known from the digests only).
 *
 * Values: floats (f64, f32, f16, bf16, f8), integers (exact; 64-bit differences beyond 2^53 lose
 * precision when turned into a number), bool, complex (modulus of the difference). NaN: NaN on both
 * sides counts as equal; NaN on one side only is a differing element, counted in `nanMismatches` and
 * left out of `maxAbsDiff`. +0 and -0 are equal values (their bytes differ). ±inf against a finite
 * value gives `maxAbsDiff: 'inf'`. Quantized dtypes are not compared (their scale is not in the
 * bytes). Files are little-endian, as is every host VS Code runs on.
 */
import type { Checkpoint, TensorInfo } from '../formats/checkpoint';
import { readTensorBytes } from '../formats/fingerprint';
import { getKey, mappingEntries } from '../formats/pickle/nodes';
import { itemSize, numelOf, type TorchDtype } from '../formats/dtypes';
import { readFull } from '../io/readAhead';
import { loraTensorName } from './loraFile';
import { tensorChange } from './tensorChange';

export type TensorDiffKind = 'equal' | 'differs' | 'shape' | 'dtype' | 'missing' | 'extra';

export interface TensorDiff {
  name: string;
  kind: TensorDiffKind;
  /** `differs`: true when the values were compared element by element, false when only the digests say so. */
  compared?: boolean;
  /** Largest |copy − source| over elements that are numbers on both sides; 'inf' when one side is ±inf. */
  maxAbsDiff?: number | 'inf';
  /** Elements whose values differ (NaN on one side only included). */
  differing?: number;
  numel?: number;
  /** Elements that are NaN on exactly one side. */
  nanMismatches?: number;
  /** Why the values were not compared, or what an odd result means. */
  note?: string;
  /** `shape` / `dtype` / `missing`: the source's dtype and shape. */
  source?: { dtype: string; shape: number[] };
}

export interface DiffOptions {
  /** Bytes read from both files together before further pairs are left to their digests (default 256 MiB). */
  budgetBytes?: number;
  /** Compare every differing pair whatever its size (the inspector's "compare all"). */
  unlimited?: boolean;
  /** Bytes per read, per side (default 1 MiB; rounded to whole elements). */
  chunkBytes?: number;
  /** Strided views are gathered in memory; over this many bytes they are not compared (default 16 MiB). */
  maxViewBytes?: number;
  cancelled?: () => boolean;
}

export interface DiffSummary {
  tensors: TensorDiff[];
  /** Tensor bytes read, both files. */
  bytesRead: number;
  /** `differs` pairs left to their digests (budget, dtype, view size, cancellation). */
  notCompared: number;
}

/** One file's tensors as the index knows them (name, dtype, shape, digest) and the open checkpoint. */
export interface DiffFile {
  c: Checkpoint;
  tensors: ReadonlyArray<{ name: string; dtype: string; shape: number[]; digest: string }>;
}

export const DEFAULT_BUDGET = 256 * 1024 * 1024;
const DEFAULT_CHUNK = 1024 * 1024;
const DEFAULT_MAX_VIEW = 16 * 1024 * 1024;

/**
 * The checkpoint's LoRA tensors by the names the index gives them: `lora_params.` left off when
 * there is one, as loraFile.ts names them (safetensors: the header names).
 */
export function loraTensorsByName(c: Checkpoint): Map<string, TensorInfo> {
  const out = new Map<string, TensorInfo>();
  if (c.format === 'safetensors' || !c.root) {
    for (const t of c.tensors) out.set(t.path, t);
    return out;
  }
  const params = mappingEntries(c.root) ? getKey(c.root, 'lora_params') : undefined;
  const prefix = params ? 'lora_params.' : '';
  for (const t of c.tensors) {
    const name = loraTensorName(t.path, prefix);
    if (name !== undefined) out.set(name, t);
  }
  return out;
}

export async function diffTensors(copy: DiffFile, source: DiffFile, opts: DiffOptions = {}): Promise<DiffSummary> {
  const copyInfo = loraTensorsByName(copy.c);
  const srcInfo = loraTensorsByName(source.c);
  const srcBy = new Map(source.tensors.map((t) => [t.name, t]));
  const copyNames = new Set(copy.tensors.map((t) => t.name));
  let budget = opts.unlimited ? Infinity : (opts.budgetBytes ?? DEFAULT_BUDGET);
  let bytesRead = 0;
  let notCompared = 0;
  const out: TensorDiff[] = [];
  for (const t of copy.tensors) {
    const s = srcBy.get(t.name);
    if (!s) {
      out.push({ name: t.name, kind: 'extra' });
      continue;
    }
    const change = tensorChange(t, s);
    if (change === 'shape' || change === 'dtype') {
      out.push({ name: t.name, kind: change, source: { dtype: s.dtype, shape: s.shape } });
      continue;
    }
    const numel = numelOf(t.shape);
    if (change === 'equal') {
      out.push({ name: t.name, kind: 'equal', numel });
      continue;
    }
    const a = copyInfo.get(t.name);
    const b = srcInfo.get(t.name);
    const d: TensorDiff = { name: t.name, kind: 'differs', compared: false, numel };
    out.push(d);
    const why = !a || !b ? 'the tensor is not where the index saw it: refresh' : notComparable(a, b, opts);
    if (why) {
      d.note = why;
      notCompared++;
      continue;
    }
    const cost = a!.byteLength + b!.byteLength;
    if (opts.cancelled?.()) {
      d.note = 'cancelled';
      notCompared++;
      continue;
    }
    if (cost > budget) {
      d.note = `not compared: ${mib(cost)} to read is over what is left of the ${mib(opts.budgetBytes ?? DEFAULT_BUDGET)} budget`;
      notCompared++;
      continue;
    }
    budget -= cost;
    bytesRead += cost;
    Object.assign(d, await compareValues(copy.c, a!, source.c, b!, opts), { compared: true });
    if (d.differing === 0) d.note = 'the bytes differ but every value is equal (+0 and -0, or NaN payloads)';
  }
  for (const s of source.tensors) {
    if (!copyNames.has(s.name)) out.push({ name: s.name, kind: 'missing', source: { dtype: s.dtype, shape: s.shape } });
  }
  return { tensors: out, bytesRead, notCompared };
}

const mib = (n: number) => `${(n / (1024 * 1024)).toFixed(n < 10 * 1024 * 1024 ? 1 : 0)} MiB`;

function notComparable(a: TensorInfo, b: TensorInfo, opts: DiffOptions): string | undefined {
  if (!comparerFor(a.dtype))
    return `values of ${a.dtype} tensors are not compared (quantized: the scale is not in the bytes)`;
  const maxView = opts.maxViewBytes ?? DEFAULT_MAX_VIEW;
  for (const t of [a, b]) {
    if (!t.contiguous && t.byteLength > maxView) return `a strided view over ${mib(maxView)} is not compared`;
  }
  return undefined;
}

/** Fills `into[0, len)` with the tensor's bytes [from, from + len), in C order. */
type ByteSource = (into: Buffer, from: number, len: number) => Promise<void>;

async function byteSource(c: Checkpoint, t: TensorInfo): Promise<ByteSource> {
  if (!t.contiguous) {
    // A view is gathered once (bounded by maxViewBytes), then served in chunks like the rest.
    const all = await readTensorBytes(c, t, Number.MAX_SAFE_INTEGER);
    return async (into, from, len) => {
      all.copy(into, 0, from, from + len);
    };
  }
  const start = t.storageOffset * itemSize(t.dtype);
  const inflated = t.storage.inflated;
  if (inflated)
    return async (into, from, len) => {
      inflated.copy(into, 0, start + from, start + from + len);
    };
  const base = t.storage.offset + start;
  const shrank = () => new Error(`${c.path}: the file shrank while it was read (${t.path})`);
  return async (into, from, len) => {
    await readFull(c.fh, into.subarray(0, len), base + from, shrank);
  };
}

interface Acc {
  max: number;
  inf: boolean;
  differing: number;
  nan: number;
}

/** Compares `n` elements of two aligned buffers of one dtype into `acc`. */
type Comparer = (a: ArrayBuffer, b: ArrayBuffer, n: number, acc: Acc) => void;

async function compareValues(
  ca: Checkpoint,
  a: TensorInfo,
  cb: Checkpoint,
  b: TensorInfo,
  opts: DiffOptions,
): Promise<Partial<TensorDiff>> {
  const size = itemSize(a.dtype);
  const cmp = comparerFor(a.dtype)!;
  const chunk = Math.max(size, Math.floor((opts.chunkBytes ?? DEFAULT_CHUNK) / size) * size);
  const total = a.byteLength;
  // ArrayBuffers of their own: typed-array views need element-aligned offsets, which pooled Buffers lack.
  const abA = new ArrayBuffer(Math.min(chunk, Math.max(size, total)));
  const abB = new ArrayBuffer(abA.byteLength);
  const bufA = Buffer.from(abA);
  const bufB = Buffer.from(abB);
  const [ra, rb] = await Promise.all([byteSource(ca, a), byteSource(cb, b)]);
  const acc: Acc = { max: 0, inf: false, differing: 0, nan: 0 };
  for (let p = 0; p < total; p += chunk) {
    const len = Math.min(chunk, total - p);
    await Promise.all([ra(bufA, p, len), rb(bufB, p, len)]);
    cmp(abA, abB, len / size, acc);
  }
  const r: Partial<TensorDiff> = { differing: acc.differing, maxAbsDiff: acc.inf ? 'inf' : acc.max };
  if (acc.nan) r.nanMismatches = acc.nan;
  return r;
}

/** One pair of float values into the accumulator, with the NaN rules above. */
function floatPair(x: number, y: number, acc: Acc): void {
  if (x === y) return; // equal values, +0 vs -0 and inf vs inf included
  if (x !== x || y !== y) {
    if (x !== x && y !== y) return; // NaN on both sides
    acc.nan++;
    acc.differing++;
    return;
  }
  acc.differing++;
  const d = Math.abs(x - y);
  if (d === Infinity) acc.inf = true;
  else if (d > acc.max) acc.max = d;
}

type NumArrayCtor = new (b: ArrayBuffer, off: number, len: number) => ArrayLike<number>;

function viaArray(Ctor: NumArrayCtor, exact: boolean): Comparer {
  return (a, b, n, acc) => {
    const x = new Ctor(a, 0, n);
    const y = new Ctor(b, 0, n);
    for (let i = 0; i < n; i++) {
      if (exact) {
        const d = Math.abs(x[i] - y[i]);
        if (d !== 0) {
          acc.differing++;
          if (d > acc.max) acc.max = d;
        }
      } else floatPair(x[i], y[i], acc);
    }
  };
}

function viaTable(table: () => Float32Array, bits: 8 | 16): Comparer {
  return (a, b, n, acc) => {
    const t = table();
    const x = bits === 16 ? new Uint16Array(a, 0, n) : new Uint8Array(a, 0, n);
    const y = bits === 16 ? new Uint16Array(b, 0, n) : new Uint8Array(b, 0, n);
    for (let i = 0; i < n; i++) if (x[i] !== y[i]) floatPair(t[x[i]], t[y[i]], acc);
  };
}

function bigints(signed: boolean): Comparer {
  return (a, b, n, acc) => {
    const x = signed ? new BigInt64Array(a, 0, n) : new BigUint64Array(a, 0, n);
    const y = signed ? new BigInt64Array(b, 0, n) : new BigUint64Array(b, 0, n);
    for (let i = 0; i < n; i++) {
      if (x[i] === y[i]) continue;
      acc.differing++;
      const d = Number(x[i] > y[i] ? x[i] - y[i] : y[i] - x[i]);
      if (d > acc.max) acc.max = d;
    }
  };
}

function complex(Ctor: typeof Float32Array | typeof Float64Array): Comparer {
  return (a, b, n, acc) => {
    const x = new Ctor(a, 0, 2 * n);
    const y = new Ctor(b, 0, 2 * n);
    for (let i = 0; i < 2 * n; i += 2) {
      const xr = x[i],
        xi = x[i + 1],
        yr = y[i],
        yi = y[i + 1];
      if (xr === yr && xi === yi) continue;
      const nx = xr !== xr || xi !== xi;
      const ny = yr !== yr || yi !== yi;
      if (nx || ny) {
        if (nx && ny) continue;
        acc.nan++;
        acc.differing++;
        continue;
      }
      acc.differing++;
      const d = Math.hypot(xr - yr, xi - yi);
      if (d === Infinity) acc.inf = true;
      else if (d > acc.max) acc.max = d;
    }
  };
}

const bool: Comparer = (a, b, n, acc) => {
  const x = new Uint8Array(a, 0, n);
  const y = new Uint8Array(b, 0, n);
  for (let i = 0; i < n; i++) {
    if ((x[i] !== 0) !== (y[i] !== 0)) {
      acc.differing++;
      acc.max = 1;
    }
  }
};

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return sign * f * 2 ** -24;
  if (e === 31) return f ? NaN : sign * Infinity;
  return sign * (1 + f / 1024) * 2 ** (e - 15);
}

function e4m3fnToFloat(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const e = (b >> 3) & 0xf;
  const m = b & 7;
  if (e === 15 && m === 7) return NaN; // the fn variant: no infinities, one NaN pattern
  if (e === 0) return sign * m * 2 ** -9;
  return sign * (1 + m / 8) * 2 ** (e - 7);
}

/** Decoding tables, built on first use (64K entries for the 16-bit formats). */
function lazyTable(size: number, f: (i: number) => number): () => Float32Array {
  let t: Float32Array | undefined;
  return () => {
    if (!t) {
      t = new Float32Array(size);
      for (let i = 0; i < size; i++) t[i] = f(i);
    }
    return t;
  };
}
const bf16Scratch = new Float32Array(1);
const bf16Bits = new Uint32Array(bf16Scratch.buffer);
const F16 = lazyTable(65536, halfToFloat);
const BF16 = lazyTable(65536, (i) => {
  bf16Bits[0] = i << 16;
  return bf16Scratch[0];
});
const E4M3 = lazyTable(256, e4m3fnToFloat);
const E5M2 = lazyTable(256, (i) => halfToFloat(i << 8));

function comparerFor(dtype: TorchDtype): Comparer | undefined {
  switch (dtype) {
    case 'float64':
      return viaArray(Float64Array, false);
    case 'float32':
      return viaArray(Float32Array, false);
    case 'float16':
      return viaTable(F16, 16);
    case 'bfloat16':
      return viaTable(BF16, 16);
    case 'float8_e4m3fn':
      return viaTable(E4M3, 8);
    case 'float8_e5m2':
      return viaTable(E5M2, 8);
    case 'int32':
      return viaArray(Int32Array, true);
    case 'int16':
      return viaArray(Int16Array, true);
    case 'int8':
      return viaArray(Int8Array, true);
    case 'uint8':
      return viaArray(Uint8Array, true);
    case 'uint16':
      return viaArray(Uint16Array, true);
    case 'uint32':
      return viaArray(Uint32Array, true);
    case 'int64':
      return bigints(true);
    case 'uint64':
      return bigints(false);
    case 'bool':
      return bool;
    case 'complex64':
      return complex(Float32Array);
    case 'complex128':
      return complex(Float64Array);
    default:
      return undefined; // qint8, quint8, qint32
  }
}
