/**
 * `.safetensors` reader and writer.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON (padded with spaces), then the data
 * buffer. Tensor `data_offsets` are relative to the start of the data buffer.
 *
 * The reader is stricter than JSON.parse: it uses its own small JSON parser so that duplicate keys
 * (which JSON.parse silently collapses) and non-integer offsets like `1e2` or `24.0` are rejected,
 * matching what the reference Rust implementation (serde) refuses.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { FormatError } from './errors';

export type SafetensorsDtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U8'
  | 'BOOL'
  | 'F8_E4M3'
  | 'F8_E5M2'
  | 'U16'
  | 'U32'
  | 'U64';

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

const DTYPES: Record<SafetensorsDtype, { size: number; torch: string }> = {
  F64: { size: 8, torch: 'float64' },
  F32: { size: 4, torch: 'float32' },
  F16: { size: 2, torch: 'float16' },
  BF16: { size: 2, torch: 'bfloat16' },
  I64: { size: 8, torch: 'int64' },
  I32: { size: 4, torch: 'int32' },
  I16: { size: 2, torch: 'int16' },
  I8: { size: 1, torch: 'int8' },
  U8: { size: 1, torch: 'uint8' },
  BOOL: { size: 1, torch: 'bool' },
  F8_E4M3: { size: 1, torch: 'float8_e4m3fn' },
  F8_E5M2: { size: 1, torch: 'float8_e5m2' },
  U16: { size: 2, torch: 'uint16' },
  U32: { size: 4, torch: 'uint32' },
  U64: { size: 8, torch: 'uint64' },
};

const METADATA_KEY = '__metadata__';
const COPY_CHUNK = 1 << 20;

export function isSafetensorsDtype(s: string): s is SafetensorsDtype {
  return Object.hasOwn(DTYPES, s);
}

export function safetensorsDtypeSize(dtype: SafetensorsDtype): number {
  return DTYPES[dtype].size;
}

export function safetensorsTorchDtype(dtype: SafetensorsDtype): string {
  return DTYPES[dtype].torch;
}

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
  const root = new JsonParser(text).parseDocument();
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

  const w = new BatchWriter(out);
  await w.push(prefix);
  // Adjacent ranges of one source (the usual case when rewriting a file) are copied as one run,
  // so thousands of tiny tensors cost a few large reads instead of one read each.
  let run: { fh: FileHandle; offset: number; length: number; name: string } | null = null;
  for (const t of tensors) {
    const d = t.data;
    if (!(d instanceof Uint8Array) && run && run.fh === d.fh && run.offset + run.length === d.offset) {
      run.length += d.length;
      continue;
    }
    if (run) await w.pushRange(run.fh, run.offset, run.length, run.name);
    run = null;
    if (d instanceof Uint8Array) await w.push(d);
    else run = { fh: d.fh, offset: d.offset, length: d.length, name: t.name };
  }
  if (run) await w.pushRange(run.fh, run.offset, run.length, run.name);
  return w.finish();
}

/**
 * Gathers small writes into one buffer: LoRA files hold thousands of tiny tensors, and one
 * write call per tensor would dominate the time. Ranges of other files are read straight into it.
 */
class BatchWriter {
  private readonly buf = Buffer.allocUnsafe(COPY_CHUNK);
  private used = 0;
  private pos = 0;
  constructor(private readonly out: FileHandle) {}

  async push(data: Uint8Array): Promise<void> {
    if (data.length >= COPY_CHUNK) {
      await this.flush();
      this.pos = await writeAll(this.out, data, this.pos);
      return;
    }
    if (this.used + data.length > COPY_CHUNK) await this.flush();
    this.buf.set(data, this.used);
    this.used += data.length;
  }

  async pushRange(fh: FileHandle, offset: number, length: number, name: string): Promise<void> {
    for (let done = 0; done < length; ) {
      if (this.used === COPY_CHUNK) await this.flush();
      const want = Math.min(COPY_CHUNK - this.used, length - done);
      const { bytesRead } = await fh.read(this.buf, this.used, want, offset + done);
      if (bytesRead === 0) {
        throw new FormatError(
          'SAFETENSORS_BAD_TENSOR',
          `source data of tensor "${name}" (and any adjacent tensors copied with it) ended ${length - done} bytes early`,
          name,
        );
      }
      this.used += bytesRead;
      done += bytesRead;
    }
  }

  /** Returns the total number of bytes written. */
  async finish(): Promise<number> {
    await this.flush();
    return this.pos;
  }

  private async flush(): Promise<void> {
    this.pos = await writeAll(this.out, this.buf.subarray(0, this.used), this.pos);
    this.used = 0;
  }
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
  const expected = numel * BigInt(DTYPES[dtype].size);
  if (expected !== BigInt(end - begin)) {
    bad(`spans ${end - begin} bytes but shape [${shape.join(', ')}] of ${dtype} needs ${expected}`);
  }
  return { name, dtype, torchDtype: DTYPES[dtype].torch, shape, begin: dataStart + begin, end: dataStart + end };
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
    const expected = t.shape.reduce((acc, d) => acc * BigInt(d), 1n) * BigInt(DTYPES[t.dtype].size);
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
// A minimal strict JSON parser: keeps number text, keeps key order, rejects duplicate keys.

type JsonValue =
  | { kind: 'object'; entries: Array<[string, JsonValue]> }
  | { kind: 'array'; items: JsonValue[] }
  | { kind: 'string'; value: string }
  | { kind: 'number'; raw: string }
  | { kind: 'literal'; value: true | false | null };

/** A valid header needs depth 3 (root, entry, shape); this only bounds recursion on hostile input. */
const MAX_DEPTH = 16;
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

class JsonParser {
  private pos = 0;
  constructor(private readonly s: string) {}

  parseDocument(): JsonValue {
    this.skipWs();
    const v = this.value(0);
    this.skipWs();
    if (this.pos !== this.s.length) this.fail('unexpected data after the JSON object');
    return v;
  }

  private fail(msg: string): never {
    headerError(`invalid JSON at character ${this.pos}: ${msg}`);
  }

  private skipWs(): void {
    const s = this.s;
    while (this.pos < s.length) {
      const c = s.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      this.pos++;
    }
  }

  private value(depth: number): JsonValue {
    if (depth > MAX_DEPTH) this.fail('nested too deeply');
    const c = this.s.charCodeAt(this.pos);
    if (c === 0x7b /* { */) return this.object(depth);
    if (c === 0x5b /* [ */) return this.array(depth);
    if (c === 0x22 /* " */) return { kind: 'string', value: this.string() };
    if (c === 0x74 /* t */) return this.literal('true', true);
    if (c === 0x66 /* f */) return this.literal('false', false);
    if (c === 0x6e /* n */) return this.literal('null', null);
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(this.s);
    if (!m) this.fail(Number.isNaN(c) ? 'unexpected end' : `unexpected ${JSON.stringify(this.s[this.pos])}`);
    this.pos += m[0].length;
    return { kind: 'number', raw: m[0] };
  }

  private literal(word: string, value: true | false | null): JsonValue {
    if (!this.s.startsWith(word, this.pos)) this.fail('unexpected literal');
    this.pos += word.length;
    return { kind: 'literal', value };
  }

  private object(depth: number): JsonValue {
    this.pos++; // {
    const entries: Array<[string, JsonValue]> = [];
    const keys = new Set<string>();
    this.skipWs();
    if (this.s[this.pos] === '}') {
      this.pos++;
      return { kind: 'object', entries };
    }
    for (;;) {
      if (this.s[this.pos] !== '"') this.fail('expected a string key');
      const key = this.string();
      if (keys.has(key)) headerError(`duplicate key ${JSON.stringify(key)}`);
      keys.add(key);
      this.skipWs();
      if (this.s[this.pos] !== ':') this.fail('expected ":"');
      this.pos++;
      this.skipWs();
      entries.push([key, this.value(depth + 1)]);
      this.skipWs();
      const c = this.s[this.pos++];
      if (c === '}') return { kind: 'object', entries };
      if (c !== ',') this.fail('expected "," or "}"');
      this.skipWs();
    }
  }

  private array(depth: number): JsonValue {
    this.pos++; // [
    const items: JsonValue[] = [];
    this.skipWs();
    if (this.s[this.pos] === ']') {
      this.pos++;
      return { kind: 'array', items };
    }
    for (;;) {
      items.push(this.value(depth + 1));
      this.skipWs();
      const c = this.s[this.pos++];
      if (c === ']') return { kind: 'array', items };
      if (c !== ',') this.fail('expected "," or "]"');
      this.skipWs();
    }
  }

  private string(): string {
    const s = this.s;
    this.pos++; // opening quote
    let out = '';
    let runStart = this.pos;
    for (;;) {
      if (this.pos >= s.length) this.fail('unterminated string');
      const c = s.charCodeAt(this.pos);
      if (c === 0x22) {
        out += s.slice(runStart, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) this.fail('control character in string');
      if (c !== 0x5c) {
        this.pos++;
        continue;
      }
      out += s.slice(runStart, this.pos);
      out += this.escape();
      runStart = this.pos;
    }
  }

  /** At a backslash; returns the decoded text. Surrogates must come in proper pairs. */
  private escape(): string {
    const e = this.s[this.pos + 1];
    this.pos += 2;
    switch (e) {
      case '"':
        return '"';
      case '\\':
        return '\\';
      case '/':
        return '/';
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'u': {
        const hi = this.hex4();
        if (hi >= 0xdc00 && hi <= 0xdfff) this.fail('lone low surrogate escape');
        if (hi < 0xd800 || hi > 0xdbff) return String.fromCharCode(hi);
        if (this.s[this.pos] !== '\\' || this.s[this.pos + 1] !== 'u') this.fail('lone high surrogate escape');
        this.pos += 2;
        const lo = this.hex4();
        if (lo < 0xdc00 || lo > 0xdfff) this.fail('lone high surrogate escape');
        return String.fromCharCode(hi, lo);
      }
      default:
        this.pos -= 2;
        return this.fail('bad escape');
    }
  }

  private hex4(): number {
    const h = this.s.slice(this.pos, this.pos + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail('bad \\u escape');
    this.pos += 4;
    return parseInt(h, 16);
  }
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
async function readExactly(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, position + done);
    if (bytesRead === 0) headerError(`file ended at byte ${position + done} while reading the header`);
    done += bytesRead;
  }
  return buf;
}

async function writeAll(fh: FileHandle, data: Uint8Array, position: number): Promise<number> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
  return position + data.length;
}
