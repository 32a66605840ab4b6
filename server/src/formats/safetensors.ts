/**
 * `.safetensors` reader and writer.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON (padded with spaces), then the data
 * buffer. Tensor `data_offsets` are relative to the start of the data buffer.
 *
 * The reader is stricter than JSON.parse: its own small JSON parser (strictJson.ts) lets duplicate
 * keys (which JSON.parse silently collapses) and non-integer offsets like `1e2` or `24.0` be rejected,
 * matching what the reference Rust implementation (serde) refuses.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { PositionalWriter } from '../io/positionalWriter';
import { readFull } from '../io/readAhead';
import { dtypeFromSafetensors, isSafetensorsDtype, itemSize, type SafetensorsDtype } from './dtypes';
import { FormatError } from './errors';
import { type JsonValue, parseStrictJson } from './strictJson';

export type { SafetensorsDtype } from './dtypes';

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDtype;
  /** The torch dtype name without `torch.` ('float32', 'bfloat16', 'bool', ...). */
  torchDtype: string;
  shape: number[];
  /** Absolute file offsets of the tensor's bytes. */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  headerSize: number;
  /** Absolute offset of the data buffer (8 + headerSize). */
  dataStart: number;
  fileSize: number;
  /** In header order. */
  tensors: SafetensorsTensor[];
  metadata: Record<string, string> | null;
}

export type SafetensorsData = Uint8Array | { fh: FileHandle; offset: number; length: number };

export interface SafetensorsInput {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  data: SafetensorsData;
}

/** Same limit as the reference implementation (100 MB). */
export const MAX_HEADER_SIZE = 100_000_000;

const METADATA_KEY = '__metadata__';
const COPY_CHUNK = 1 << 20;

/** Cheap sniff from the first 9+ bytes: a plausible header length followed by `{`. */
export function isSafetensors(head: Uint8Array, fileSize: number): boolean {
  if (head.length < 9) return false;
  const n = readU64(head);
  return n >= 2n && n <= BigInt(MAX_HEADER_SIZE) && n + 8n <= BigInt(fileSize) && head[8] === 0x7b;
}

/** Reads and validates the header only; tensor bytes are never read. */
export async function readSafetensors(fh: FileHandle, fileSize: number): Promise<SafetensorsFile> {
  if (fileSize < 8) headerError(`file is ${fileSize} bytes, too short for the 8-byte header length`);
  const lenBytes = await readExactly(fh, 0, 8);
  const n = readU64(lenBytes);
  if (n < 2n) headerError(`header length ${n} is below the minimum of 2`);
  if (n > BigInt(MAX_HEADER_SIZE)) headerError(`header length ${n} exceeds the ${MAX_HEADER_SIZE}-byte limit`);
  if (n > BigInt(fileSize - 8)) headerError(`header length ${n} runs past the end of the ${fileSize}-byte file`);
  const headerSize = Number(n);
  const raw = await readExactly(fh, 8, headerSize);
  return parseHeader(raw, fileSize);
}

export async function readSafetensorsFile(path: string): Promise<SafetensorsFile> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    return await readSafetensors(fh, size);
  } finally {
    await fh.close();
  }
}

/**
 * Validates a header (the N bytes after the length prefix) against a file of `fileSize` bytes.
 * Exported so callers holding the header bytes in memory need no file handle.
 */
export function parseHeader(raw: Uint8Array, fileSize: number): SafetensorsFile {
  const headerSize = raw.length;
  if (raw[0] !== 0x7b) headerError('header does not start with "{"');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw);
  } catch {
    headerError('header is not valid UTF-8');
  }
  const root = parseStrictJson(text, (msg) => new FormatError('SAFETENSORS_BAD_HEADER', msg));
  if (root.kind !== 'object') headerError('header is not a JSON object');

  const dataStart = 8 + headerSize;
  const dataSize = fileSize - dataStart;
  if (dataSize < 0) headerError(`header length ${headerSize} runs past the end of the ${fileSize}-byte file`);
  let metadata: Record<string, string> | null = null;
  const tensors: SafetensorsTensor[] = [];
  for (const [key, value] of root.entries) {
    if (key === METADATA_KEY) metadata = toMetadata(value);
    else tensors.push(toTensor(key, value, dataStart, dataSize));
  }
  checkCoverage(tensors, dataStart, dataSize);
  return { headerSize, dataStart, fileSize, tensors, metadata };
}

/**
 * Writes a complete file to `out` (an open, empty handle) at positions 0.. and returns its size.
 * Header keys follow the input order with `__metadata__` first; data is laid out contiguously in
 * the same order. Ranges of another file are streamed in chunks, never loaded whole.
 */
export async function writeSafetensors(
  out: FileHandle,
  tensors: SafetensorsInput[],
  metadata?: Record<string, string> | null,
): Promise<number> {
  const header = Buffer.from(buildHeaderJson(tensors, metadata), 'utf8');
  const padded = Math.ceil(header.length / 8) * 8;
  if (padded > MAX_HEADER_SIZE) {
    headerError(`header would be ${padded} bytes, over the ${MAX_HEADER_SIZE}-byte limit`);
  }
  const prefix = Buffer.alloc(8 + padded, 0x20);
  prefix.writeBigUInt64LE(BigInt(padded), 0);
  header.copy(prefix, 8);

  // LoRA files hold thousands of tiny tensors: one write call per tensor would dominate the time.
  const w = new PositionalWriter(out, COPY_CHUNK);
  await w.write(prefix);
  // Adjacent ranges of one source (the usual case when rewriting a file) are copied as one run,
  // so thousands of tiny tensors cost a few large reads instead of one read each.
  let run: { fh: FileHandle; offset: number; length: number; name: string } | null = null;
  for (const t of tensors) {
    const d = t.data;
    if (!(d instanceof Uint8Array) && run && run.fh === d.fh && run.offset + run.length === d.offset) {
      run.length += d.length;
      continue;
    }
    if (run) await copyRun(w, run);
    run = null;
    if (d instanceof Uint8Array) await w.write(d);
    else run = { fh: d.fh, offset: d.offset, length: d.length, name: t.name };
  }
  if (run) await copyRun(w, run);
  await w.flush();
  return w.position;
}

function copyRun(w: PositionalWriter, run: { fh: FileHandle; offset: number; length: number; name: string }) {
  return w.copyFrom(
    run.fh,
    run.offset,
    run.length,
    (missing) =>
      new FormatError(
        'SAFETENSORS_BAD_TENSOR',
        `source data of tensor "${run.name}" (and any adjacent tensors copied with it) ended ${missing} bytes early`,
        run.name,
      ),
  );
}

// ---------------------------------------------------------------------------------------------
// Header validation

function toMetadata(value: JsonValue): Record<string, string> | null {
  // The reference implementation deserializes `__metadata__` as Option<HashMap>, so `null` is legal.
  if (value.kind === 'literal' && value.value === null) return null;
  if (value.kind !== 'object') headerError('"__metadata__" is not an object');
  const entries: Array<[string, string]> = [];
  for (const [k, v] of value.entries) {
    if (v.kind !== 'string') headerError(`"__metadata__" value of "${k}" is not a string`);
    entries.push([k, v.value]);
  }
  // fromEntries defines own properties, so a key like "__proto__" stays plain data.
  return Object.fromEntries(entries);
}

function toTensor(name: string, value: JsonValue, dataStart: number, dataSize: number): SafetensorsTensor {
  function bad(msg: string): never {
    throw new FormatError('SAFETENSORS_BAD_TENSOR', `tensor "${name}": ${msg}`, name);
  }
  if (value.kind !== 'object') bad('entry is not an object');
  let dtypeV: JsonValue | undefined;
  let shapeV: JsonValue | undefined;
  let offsetsV: JsonValue | undefined;
  for (const [k, v] of value.entries) {
    if (k === 'dtype') dtypeV = v;
    else if (k === 'shape') shapeV = v;
    else if (k === 'data_offsets') offsetsV = v;
    else bad(`unexpected field "${k}"`);
  }
  if (!dtypeV || !shapeV || !offsetsV) bad('entry needs exactly "dtype", "shape" and "data_offsets"');

  if (dtypeV.kind !== 'string') bad('"dtype" is not a string');
  const dtype = dtypeV.value;
  if (!isSafetensorsDtype(dtype)) bad(`unknown dtype "${dtype}"`);

  if (shapeV.kind !== 'array') bad('"shape" is not an array');
  const shape = shapeV.items.map((v, i) => toUint(v, `shape[${i}]`, bad));

  if (offsetsV.kind !== 'array' || offsetsV.items.length !== 2) bad('"data_offsets" is not an array of two integers');
  const begin = toUint(offsetsV.items[0], 'data_offsets[0]', bad);
  const end = toUint(offsetsV.items[1], 'data_offsets[1]', bad);
  if (begin > end) bad(`data_offsets begin ${begin} is after end ${end}`);
  if (end > dataSize) bad(`data_offsets end ${end} is outside the ${dataSize}-byte data buffer`);

  // BigInt: a product of safe integers can overflow doubles, and a zero dim makes huge dims legal.
  const numel = shape.reduce((acc, d) => acc * BigInt(d), 1n);
  const torchDtype = dtypeFromSafetensors(dtype)!;
  const expected = numel * BigInt(itemSize(torchDtype));
  if (expected !== BigInt(end - begin)) {
    bad(`spans ${end - begin} bytes but shape [${shape.join(', ')}] of ${dtype} needs ${expected}`);
  }
  return { name, dtype, torchDtype, shape, begin: dataStart + begin, end: dataStart + end };
}

function tensorError(name: string, msg: string): never {
  throw new FormatError('SAFETENSORS_BAD_TENSOR', `tensor "${name}": ${msg}`, name);
}

function toUint(v: JsonValue | undefined, what: string, bad: (msg: string) => never): number {
  if (v?.kind !== 'number') return bad(`${what} is not an integer`);
  if (v.raw.startsWith('-')) return bad(`${what} is negative (${v.raw})`);
  if (!/^[0-9]+$/.test(v.raw)) return bad(`${what} is not an integer (${v.raw})`);
  const n = Number(v.raw);
  if (!Number.isSafeInteger(n)) return bad(`${what} is too large (${v.raw})`);
  return n;
}

/** Sorted by offset, the tensors must tile the data buffer exactly: from 0 to its end, no gaps or overlaps. */
function checkCoverage(tensors: SafetensorsTensor[], dataStart: number, dataSize: number): void {
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = dataStart;
  let prev: SafetensorsTensor | null = null;
  for (const t of sorted) {
    if (t.begin > cursor) {
      const after = prev ? `after tensor "${prev.name}"` : 'at the start of the data buffer';
      throw new FormatError(
        'SAFETENSORS_BAD_TENSOR',
        `gap of ${t.begin - cursor} bytes ${after}, before tensor "${t.name}"`,
        t.name,
      );
    }
    if (t.begin < cursor) {
      throw new FormatError('SAFETENSORS_BAD_TENSOR', `tensor "${t.name}" overlaps tensor "${prev?.name}"`, t.name);
    }
    cursor = t.end;
    prev = t;
  }
  const end = dataStart + dataSize;
  if (cursor !== end) {
    throw new FormatError(
      'SAFETENSORS_BAD_TENSOR',
      `${end - cursor} bytes at the end of the data buffer belong to no tensor`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Header serialization

function buildHeaderJson(tensors: SafetensorsInput[], metadata: Record<string, string> | null | undefined): string {
  const parts: string[] = [];
  if (metadata) {
    const kv = Object.entries(metadata).map(([k, v]) => {
      if (typeof v !== 'string') headerError(`metadata value of "${k}" is not a string`);
      return `${jsonString(k, 'metadata key')}:${jsonString(v, 'metadata value')}`;
    });
    parts.push(`"${METADATA_KEY}":{${kv.join(',')}}`);
  }
  const seen = new Set<string>();
  let offset = 0;
  for (const t of tensors) {
    const bad = (msg: string): never => tensorError(t.name, msg);
    if (t.name === METADATA_KEY) bad('the name is reserved');
    if (seen.has(t.name)) bad('duplicate name');
    seen.add(t.name);
    if (!isSafetensorsDtype(t.dtype)) bad(`unknown dtype "${String(t.dtype)}"`);
    for (const d of t.shape) if (!Number.isSafeInteger(d) || d < 0) bad(`bad dimension ${d}`);
    const length = t.data.length;
    if (!(t.data instanceof Uint8Array) && (!Number.isSafeInteger(t.data.offset) || t.data.offset < 0)) {
      bad(`bad source offset ${t.data.offset}`);
    }
    const expected = t.shape.reduce((acc, d) => acc * BigInt(d), 1n) * BigInt(itemSize(dtypeFromSafetensors(t.dtype)!));
    if (!Number.isSafeInteger(length) || BigInt(length) !== expected)
      bad(`data is ${length} bytes, shape needs ${expected}`);
    const begin = offset;
    offset += length;
    parts.push(
      `${jsonString(t.name, 'tensor name')}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${begin},${offset}]}`,
    );
  }
  return `{${parts.join(',')}}`;
}

/** JSON.stringify would turn a lone surrogate into an escape the reader's UTF-8 text can never hold. */
function jsonString(s: string, what: string): string {
  if (/\p{Surrogate}/u.test(s)) headerError(`${what} ${JSON.stringify(s)} contains a lone surrogate`);
  return JSON.stringify(s);
}

// ---------------------------------------------------------------------------------------------
// Small I/O helpers

function headerError(msg: string): never {
  throw new FormatError('SAFETENSORS_BAD_HEADER', msg);
}

function readU64(b: Uint8Array): bigint {
  return Buffer.from(b.buffer, b.byteOffset, 8).readBigUInt64LE(0);
}

/** A short read means the file shrank under us: that is bad input, not a crash. */
function readExactly(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  return readFull(
    fh,
    Buffer.alloc(length),
    position,
    (at) => new FormatError('SAFETENSORS_BAD_HEADER', `file ended at byte ${at} while reading the header`),
  );
}
