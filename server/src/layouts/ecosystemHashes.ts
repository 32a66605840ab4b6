/**
 * The hashes A1111, Civitai, kohya-ss and ModelSpec show for a model file, computed in one
 * streaming pass (bounded memory: two chunk buffers), and the check of the hashes a file embeds.
 *
 * Definitions (docs/layouts.md has the sources):
 * - AutoV2: SHA-256 of the whole file, shown as its first 10 hex (A1111 `modules/hashes.py`).
 * - AutoV3 / addnet: SHA-256 of a safetensors file's data after the header, `file[8 + N:]`; shown as
 *   12 hex; kohya embeds the full hex as `sshs_model_hash` (`addnet_hash_safetensors`).
 * - legacy / AutoV1: SHA-256 of the bytes at 0x100000..0x110000 (as many as the file has there;
 *   none gives the empty input's hash), first 8 hex (`model_hash`, `addnet_hash_legacy`). kohya's
 *   embedded `sshs_legacy_hash` is that hash of a different file: the tensors re-serialised with only
 *   the `ss_*` metadata (`precalculate_safetensors_hashes`), see `kohyaLegacyHash`.
 * - `modelspec.hash_sha256`: "a hash of all tensor content (ie excluding the header section), with
 *   `0x` prefix" (ModelSpec README): `0x` + the SHA-256 of the data section.
 */
import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import { isSafetensors, readSafetensorsFile } from '../formats/safetensors';
import { dtypeFromSafetensors, itemSize, type SafetensorsDtype } from '../formats/dtypes';
import { readAhead, readFull } from '../io/readAhead';

export const LEGACY_OFFSET = 0x100000;
export const LEGACY_LENGTH = 0x10000;
/** SHA-256 of empty input: what a hash of nothing gives (some trainers embed it by mistake). */
export const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const CHUNK = 1 << 20;

export interface FileHashes {
  size: number;
  /** SHA-256 of the whole file, full hex. */
  sha256: string;
  /** First 10 hex of `sha256` (Civitai shows it upper-case). */
  autoV2: string;
  /** A1111's legacy `model_hash` of this file: first 8 hex. */
  legacy: string;
  /** Bytes the legacy window held: 65536 when the file reaches 0x110000, 0 below 1 MiB. */
  legacyWindowBytes: number;
  /** safetensors only. */
  safetensors?: {
    /** 8 + header length: where the tensor data starts. */
    dataStart: number;
    /** SHA-256 of `file[dataStart:]`, full hex (= `sshs_model_hash`). */
    dataSha256: string;
    /** First 12 hex of `dataSha256`. */
    autoV3: string;
  };
}

/** Reads the file once, front to back, feeding every hash from the same chunks. */
export async function hashFile(path: string): Promise<FileHashes> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const head = Buffer.alloc(Math.min(size, 9));
    if (head.length) await readFull(fh, head, 0, endedAt);
    const dataStart = isSafetensors(head, size) ? 8 + Number(head.readBigUInt64LE(0)) : undefined;
    const whole = createHash('sha256');
    const data = dataStart === undefined ? undefined : createHash('sha256');
    const legacy = createHash('sha256');
    const bufs: [Buffer, Buffer] = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
    let pos = 0;
    for await (const chunk of readAhead(fh, 0, size, bufs, endedAt)) {
      whole.update(chunk);
      const end = pos + chunk.length;
      if (data && end > dataStart!) data.update(chunk.subarray(Math.max(0, dataStart! - pos)));
      const a = Math.max(pos, LEGACY_OFFSET);
      const b = Math.min(end, LEGACY_OFFSET + LEGACY_LENGTH);
      if (a < b) legacy.update(chunk.subarray(a - pos, b - pos));
      pos = end;
    }
    const sha256 = whole.digest('hex');
    const out: FileHashes = {
      size,
      sha256,
      autoV2: sha256.slice(0, 10),
      legacy: legacy.digest('hex').slice(0, 8),
      legacyWindowBytes: Math.max(0, Math.min(size, LEGACY_OFFSET + LEGACY_LENGTH) - LEGACY_OFFSET),
    };
    if (data) {
      const dataSha256 = data.digest('hex');
      out.safetensors = { dataStart: dataStart!, dataSha256, autoV3: dataSha256.slice(0, 12) };
    }
    return out;
  } finally {
    await fh.close();
  }
}

function endedAt(at: number): Error {
  return new Error(`the file ended at byte ${at} while being hashed (it is being written?)`);
}

// ------------------------------------------------------------------------------------------------
// kohya's sshs_legacy_hash: the legacy window of a re-serialisation with only the ss_* metadata
// ------------------------------------------------------------------------------------------------

/** One tensor of a safetensors data section; `begin`/`end` relative to the data start. */
export interface TensorSpan {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/** safetensors' Dtype enum order (increasing alignment); `serialize` sorts descending, then by name. */
const DTYPE_RANK: Record<SafetensorsDtype, number> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  F8_E5M2: 3,
  F8_E4M3: 4,
  I16: 5,
  U16: 6,
  F16: 7,
  BF16: 8,
  I32: 9,
  U32: 10,
  F32: 11,
  F64: 12,
  I64: 13,
  U64: 14,
};

const utf8Compare = (a: string, b: string) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

/** The order `safetensors.torch.save` lays tensors out in (huggingface/safetensors, tensor.rs `prepare`). */
export function safetensorsSaveOrder<T extends { name: string; dtype: SafetensorsDtype }>(tensors: readonly T[]): T[] {
  return [...tensors].sort((a, b) => DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || utf8Compare(a.name, b.name));
}

/**
 * Length of the (padded) header `safetensors.torch.save(tensors, metadata)` writes: compact JSON
 * (serde_json escapes exactly as JSON.stringify does for valid strings), padded with spaces to 8.
 * Key order changes the bytes, never the length.
 */
export function savedHeaderLength(
  metadata: Readonly<Record<string, string>> | undefined,
  tensors: readonly { name: string; dtype: SafetensorsDtype; shape: number[] }[],
): number {
  const parts: string[] = [];
  if (metadata) {
    const kv = Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    parts.push(`"__metadata__":{${kv.join(',')}}`);
  }
  let off = 0;
  for (const t of safetensorsSaveOrder(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1) * safetensorsItemSize(t.dtype);
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${off},${off + n}]}`,
    );
    off += n;
  }
  const len = Buffer.byteLength(`{${parts.join(',')}}`, 'utf8');
  return Math.ceil(len / 8) * 8;
}

export function ssOnly(metadata: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) if (k.startsWith('ss_')) out[k] = v;
  return out;
}

/** Reads `length` bytes at `offset` of the data section (the file's, or the one about to be written). */
export type DataReader = (offset: number, length: number) => Promise<Uint8Array>;

export type Computed = { value: string } | { why: string };

/**
 * kohya's `sshs_legacy_hash` for these tensors and metadata: the legacy window of the file
 * `safetensors.torch.save(tensors, ss_* metadata)` would write. Computable when that window lies in
 * the data (the metadata's key order, which would change header bytes, is then irrelevant).
 */
export async function kohyaLegacyHash(
  metadata: Readonly<Record<string, string>>,
  tensors: readonly TensorSpan[],
  readData: DataReader,
): Promise<Computed> {
  const headerEnd = 8 + savedHeaderLength(ssOnly(metadata), tensors);
  const ordered = safetensorsSaveOrder(tensors);
  const total = headerEnd + ordered.reduce((a, t) => a + (t.end - t.begin), 0);
  const from = LEGACY_OFFSET;
  const to = Math.min(total, LEGACY_OFFSET + LEGACY_LENGTH);
  const h = createHash('sha256');
  if (from < to && from < headerEnd)
    return { why: 'the ss_* header reaches into the legacy window (its bytes depend on key order)' };
  // Map the window onto the re-serialised data: tensor by tensor, read from where each really is.
  let at = headerEnd;
  for (const t of ordered) {
    const len = t.end - t.begin;
    const a = Math.max(at, from);
    const b = Math.min(at + len, to);
    if (a < b) h.update(await readData(t.begin + (a - at), b - a));
    at += len;
    if (at >= to) break;
  }
  return { value: h.digest('hex').slice(0, 8) };
}

// ------------------------------------------------------------------------------------------------
// Embedded hashes: check, and the values a writer must embed
// ------------------------------------------------------------------------------------------------

export const EMBEDDED_KEYS = ['sshs_model_hash', 'sshs_legacy_hash', 'modelspec.hash_sha256'] as const;
export type EmbeddedKey = (typeof EMBEDDED_KEYS)[number];

export interface EmbeddedHashIssue {
  type: 'EMBEDDED_HASH_MISMATCH';
  key: EmbeddedKey;
  embedded: string;
  actual: string;
  detail: string;
}

/** What the file's bytes say: the data hash and (when computable) kohya's legacy hash. */
export interface ActualHashes {
  /** Undefined: not computed (no key needs it). */
  dataSha256?: string;
  kohyaLegacy?: string;
}

function normalize(v: string): string {
  const s = v.trim().toLowerCase();
  return s.startsWith('0x') ? s.slice(2) : s;
}

/** Embedded hashes that disagree with the file. An empty value is no claim and is not checked. */
export function checkEmbeddedHashes(
  metadata: Readonly<Record<string, string>> | null | undefined,
  actual: ActualHashes,
): EmbeddedHashIssue[] {
  if (!metadata) return [];
  const issues: EmbeddedHashIssue[] = [];
  const check = (key: EmbeddedKey, want: string | undefined, minLen: number) => {
    const raw = metadata[key];
    if (raw === undefined || raw.trim() === '' || want === undefined) return;
    const got = normalize(raw);
    // A shortened value (AutoV3's 12 hex) is a claim about a prefix.
    if (got.length >= minLen && /^[0-9a-f]+$/.test(got) && want.startsWith(got)) return;
    const empty = got === EMPTY_SHA256 || (got.length >= minLen && EMPTY_SHA256.startsWith(got));
    issues.push({
      type: 'EMBEDDED_HASH_MISMATCH',
      key,
      embedded: raw,
      actual: key === 'modelspec.hash_sha256' ? `0x${want}` : want,
      detail: empty
        ? `${key} is the SHA-256 of empty input (${got.slice(0, 8)}…): the writer hashed nothing; the file's is ${want.slice(0, 12)}`
        : `${key} says ${got.slice(0, 12)}, the file's is ${want.slice(0, 12)}`,
    });
  };
  check('sshs_model_hash', actual.dataSha256, 8);
  check('sshs_legacy_hash', actual.kohyaLegacy, 8);
  check('modelspec.hash_sha256', actual.dataSha256, 8);
  return issues;
}

/**
 * The values a safetensors writer must embed for the keys `metadata` already has, given the data
 * section it is about to write (its tensors, their SHA-256, and a reader of its bytes), and the keys
 * it cannot compute, with why. Keys the metadata lacks are not added.
 */
export async function embeddedHashesFor(
  metadata: Readonly<Record<string, string>>,
  data: { tensors: readonly TensorSpan[]; sha256: string; read: DataReader },
): Promise<{ values: Partial<Record<EmbeddedKey, string>>; cannot: { key: EmbeddedKey; why: string }[] }> {
  const values: Partial<Record<EmbeddedKey, string>> = {};
  const cannot: { key: EmbeddedKey; why: string }[] = [];
  if ('sshs_model_hash' in metadata) values.sshs_model_hash = data.sha256;
  if ('modelspec.hash_sha256' in metadata) values['modelspec.hash_sha256'] = `0x${data.sha256}`;
  if ('sshs_legacy_hash' in metadata) {
    const legacy = await kohyaLegacyHash(metadata, data.tensors, data.read);
    if ('value' in legacy) values.sshs_legacy_hash = legacy.value;
    else cannot.push({ key: 'sshs_legacy_hash', why: legacy.why });
  }
  return { values, cannot };
}

/** A reader of an existing file's data section (for checks of files on disk). */
export function fileDataReader(fh: FileHandle, dataStart: number): DataReader {
  return (offset, length) => readFull(fh, Buffer.alloc(length), dataStart + offset, endedAt);
}

/** Spans relative to the data start, from a reader's absolute tensor offsets. */
export function spansOf(
  tensors: readonly { name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number }[],
  dataStart: number,
): TensorSpan[] {
  return tensors.map((t) => ({
    name: t.name,
    dtype: t.dtype,
    shape: t.shape,
    begin: t.begin - dataStart,
    end: t.end - dataStart,
  }));
}

/**
 * The whole check for one file on disk: its hashes (one pass) and, for safetensors, the embedded
 * hashes that disagree with it. The file must not change meanwhile (the engine checks its key).
 */
export async function embeddedHashReport(path: string): Promise<{ hashes: FileHashes; issues: EmbeddedHashIssue[] }> {
  const hashes = await hashFile(path);
  if (!hashes.safetensors) return { hashes, issues: [] };
  const st = await readSafetensorsFile(path);
  const md = st.metadata ?? {};
  if (!EMBEDDED_KEYS.some((k) => k in md)) return { hashes, issues: [] };
  const fh = await open(path, 'r');
  try {
    const legacy =
      'sshs_legacy_hash' in md
        ? await kohyaLegacyHash(md, spansOf(st.tensors, st.dataStart), fileDataReader(fh, st.dataStart))
        : undefined;
    const actual: ActualHashes = {
      dataSha256: hashes.safetensors.dataSha256,
      kohyaLegacy: legacy && 'value' in legacy ? legacy.value : undefined,
    };
    return { hashes, issues: checkEmbeddedHashes(md, actual) };
  } finally {
    await fh.close();
  }
}

/** Bytes per element of a safetensors dtype code (the one dtype table, by way of torch's name). */
function safetensorsItemSize(code: SafetensorsDtype): number {
  const dtype = dtypeFromSafetensors(code);
  if (!dtype) throw new Error(`unknown safetensors dtype ${code}`);
  return itemSize(dtype);
}
