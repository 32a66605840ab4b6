/**
 * Fingerprints: a digest of each tensor's own bytes (the region it views, in C order, not the whole
 * shared storage) with its dtype and shape, the CRC check of every zip record on the way, and a
 * digest of a metadata subtree with chosen keys left out.
 *
 * Digest (DIGEST_ALG): the bytes are cut into 4 MiB leaves; each leaf is hashed with XXH64; the
 * digest is the first 128 bits of SHA-256 over (leaf digests, big-endian ‖ total length, u64 LE).
 * Measured here on 200 MB (`npm run bench:format`): XXH64 runs at ~9 GB/s native and ~5.7 GB/s in
 * WebAssembly, against ~3.6 GB/s for XXH3-128 in WebAssembly (the native XXH3 build runs at 1.5 GB/s),
 * ~1.2 GB/s for SHA-256 with SHA-NI and ~0.18 GB/s for coreutils sha256sum. XXH64 is not a
 * cryptographic hash: it decides "same bytes or not" between files the user already trusts with write
 * access (a chance collision is 2^-64 per compared leaf), not a defence against a forger. The leaf
 * tree makes the digest independent of how reads are chunked; SHA-256 over the short list of leaf
 * digests costs ~0.5 µs and makes the top well mixed.
 *
 * Reads are overlapped with hashing: the next 1 MiB chunk is read (libuv's thread pool) while this
 * one is checked and hashed, so a large file costs about the longer of the two, not their sum.
 */
import { hash } from 'node:crypto';
import type { Checkpoint, StorageInfo, TensorInfo } from './checkpoint';
import type { ZipRecord } from './zip/zipReader';
import { itemSize } from './dtypes';
import { type PyNode, mappingEntries } from './pickle/nodes';
import { typedForm, type Typed } from './pyValue';
import { hashBackend, crc32, type Xxh64Stream } from './hashBackend';
import { readAhead, readFull } from '../io/readAhead';

export const DIGEST_ALG = 'xxh64-4MiB-leaves+sha256-128';
const LEAF = 4 * 1024 * 1024;
/** Read size when streaming a storage; two buffers of it are in use at once. */
const CHUNK = 1024 * 1024;
/** Non-contiguous views spanning at most this many storage bytes are gathered in memory. */
const GATHER_SPAN_MAX = 64 * 1024 * 1024;

export interface TensorFingerprint {
  path: string;
  dtype: string;
  shape: number[];
  /** Hex digest of the viewed bytes (DIGEST_ALG). */
  digest: string;
  bytes: number;
}

export interface CrcResult {
  record: string;
  expected: number;
  actual: number;
}

export interface CheckpointFingerprint {
  alg: string;
  tensors: TensorFingerprint[];
  /** Records whose CRC32 did not match (empty when all are good; always empty for legacy/safetensors). */
  crcFailures: CrcResult[];
  /** True when every record of a zip was CRC-checked (tensor records and data.pkl/version). */
  crcChecked: boolean;
}

/** Streams bytes into 4 MiB leaves; see DIGEST_ALG. */
class TreeHasher {
  private leafFill = 0;
  private total = 0;
  private leaves = 0;
  /** Leaf digests (8 bytes each), then room for the length; grows for tensors over 4 MiB x 32. */
  private top = Buffer.allocUnsafe(32 * 8 + 8);
  constructor(private readonly leaf: Xxh64Stream) {
    leaf.init();
  }
  /** Starts a new digest with the same hasher. */
  reset(): void {
    this.leaf.init();
    this.leafFill = 0;
    this.total = 0;
    this.leaves = 0;
  }
  update(b: Uint8Array): void {
    let off = 0;
    while (off < b.length) {
      const n = Math.min(LEAF - this.leafFill, b.length - off);
      this.leaf.update(off === 0 && n === b.length ? b : b.subarray(off, off + n));
      this.leafFill += n;
      this.total += n;
      off += n;
      if (this.leafFill === LEAF) this.closeLeaf();
    }
  }
  private closeLeaf(): void {
    if ((this.leaves + 1) * 8 + 8 > this.top.length) {
      const bigger = Buffer.allocUnsafe(this.top.length * 2);
      this.top.copy(bigger, 0, 0, this.leaves * 8);
      this.top = bigger;
    }
    this.leaf.digestInto(this.top, this.leaves * 8);
    this.leaves++;
    this.leaf.init();
    this.leafFill = 0;
  }
  /**
   * The digest of `b` alone (what reset, update(b), digest give), with one leaf call when `b` fits
   * one leaf and the backend hashes in one shot.
   */
  digestOf(b: Uint8Array): string {
    if (!this.leaf.oneShotInto || b.length > LEAF) {
      this.reset();
      this.update(b);
      return this.digest();
    }
    this.leaf.oneShotInto(b, this.top, 0);
    return this.topDigest(1, b.length);
  }
  digest(): string {
    if (this.leafFill > 0 || this.leaves === 0) this.closeLeaf();
    return this.topDigest(this.leaves, this.total);
  }
  /** SHA-256 over the first `leaves` leaf digests and the total length (u64 LE), cut to 128 bits. */
  private topDigest(leaves: number, total: number): string {
    const n = leaves * 8;
    this.top.writeUInt32LE(total % 0x1_0000_0000, n);
    this.top.writeUInt32LE(Math.floor(total / 0x1_0000_0000), n + 4);
    return hash('sha256', this.top.subarray(0, n + 8), 'hex').slice(0, 32);
  }
}

/** Leaf hashers are reused: a portable one is a WebAssembly instance. */
class HasherPool {
  private free: TreeHasher[] = [];
  async tree(): Promise<{ t: TreeHasher; release: () => void }> {
    return this.treeNow() ?? this.wrap(new TreeHasher(await hashBackend().xxh64()));
  }
  /** A tree hasher without waiting, or undefined when the portable backend has none ready. */
  treeNow(): { t: TreeHasher; release: () => void } | undefined {
    const t = this.free.pop();
    if (t) {
      t.reset();
      return this.wrap(t);
    }
    const leaf = hashBackend().xxh64Now();
    return leaf ? this.wrap(new TreeHasher(leaf)) : undefined;
  }
  private wrap(t: TreeHasher): { t: TreeHasher; release: () => void } {
    return {
      t,
      release: () => {
        if (this.free.length < 16) this.free.push(t);
      },
    };
  }
}
const pool = new HasherPool();

/** Digest of one byte string, same algorithm as tensors (used for metadata digests). */
export async function digestBytes(b: Uint8Array): Promise<string> {
  const { t, release } = await pool.tree();
  try {
    t.update(b);
    return t.digest();
  } finally {
    release();
  }
}

const shrank = (c: Checkpoint) => (at: number) => new Error(`${c.path}: file shrank while reading (offset ${at})`);

function readAt(c: Checkpoint, pos: number, len: number, into?: Buffer): Promise<Buffer> {
  return readFull(c.fh, into && into.length >= len ? into.subarray(0, len) : Buffer.allocUnsafe(len), pos, shrank(c));
}

/**
 * Calls `fn` with consecutive chunks of a storage's bytes [start, end). From a file, the next chunk
 * is being read into the other buffer while `fn` runs on this one.
 */
async function eachChunk(
  c: Checkpoint,
  s: StorageInfo,
  start: number,
  end: number,
  bufs: [Buffer, Buffer],
  fn: (b: Buffer, at: number) => void,
): Promise<void> {
  if (s.inflated) {
    for (let p = start; p < end; p += CHUNK) fn(s.inflated.subarray(p, Math.min(end, p + CHUNK)), p);
    return;
  }
  const ended = (at: number) => shrank(c)(s.offset + start + at);
  let p = start;
  for await (const b of readAhead(c.fh, s.offset + start, end - start, bufs, ended)) {
    fn(b, p);
    p += b.length;
  }
}

/** Feeds a non-contiguous view's elements, in C order, to `sink` in bounded pieces. */
async function gather(c: Checkpoint, t: TensorInfo, sink: (b: Uint8Array) => void): Promise<void> {
  const size = itemSize(t.dtype);
  const nd = t.shape.length;
  const lo = t.storageOffset;
  let hi = t.storageOffset;
  for (let i = 0; i < nd; i++) if (t.shape[i] > 0) hi += (t.shape[i] - 1) * t.stride[i];
  if (t.shape.some((d) => d === 0)) return;
  const spanBytes = (hi - lo + 1) * size;
  const base =
    spanBytes <= GATHER_SPAN_MAX
      ? t.storage.inflated
        ? t.storage.inflated.subarray(lo * size, (hi + 1) * size)
        : await readAt(c, t.storage.offset + lo * size, spanBytes)
      : undefined;
  const out = Buffer.allocUnsafe(Math.min(1 << 20, t.byteLength) - (Math.min(1 << 20, t.byteLength) % size || 0));
  let fill = 0;
  const idx = new Array<number>(nd).fill(0);
  const numel = t.byteLength / size;
  const one = Buffer.allocUnsafe(size);
  for (let e = 0; e < numel; e++) {
    let off = t.storageOffset;
    for (let i = 0; i < nd; i++) off += idx[i] * t.stride[i];
    if (base) base.copy(out, fill, (off - lo) * size, (off - lo + 1) * size);
    else (await readAt(c, t.storage.offset + off * size, size, one)).copy(out, fill);
    fill += size;
    if (fill === out.length) {
      sink(out);
      fill = 0;
    }
    for (let i = nd - 1; i >= 0; i--) {
      if (++idx[i] < t.shape[i]) break;
      idx[i] = 0;
    }
  }
  if (fill) sink(out.subarray(0, fill));
}

/**
 * A tensor's elements in C order as one buffer (for comparing values, not for big tensors:
 * refuses views over `maxBytes`).
 */
export async function readTensorBytes(c: Checkpoint, t: TensorInfo, maxBytes = 256 * 1024 * 1024): Promise<Buffer> {
  if (t.byteLength > maxBytes) throw new Error(`${t.path}: ${t.byteLength} bytes is more than ${maxBytes}`);
  const out = Buffer.allocUnsafe(t.byteLength);
  let fill = 0;
  if (t.contiguous) {
    const start = t.storageOffset * itemSize(t.dtype);
    if (t.storage.inflated) t.storage.inflated.copy(out, 0, start, start + t.byteLength);
    else if (t.byteLength) await readAt(c, t.storage.offset + start, t.byteLength, out);
    return out;
  }
  await gather(c, t, (b) => {
    out.set(b, fill);
    fill += b.length;
  });
  return out;
}

/**
 * Reads every storage once: checks its record's CRC32 (zip) and feeds each contiguous tensor's
 * byte range to that tensor's hasher; non-contiguous views are gathered afterwards.
 * Memory: one 4 MiB chunk plus hasher state, whatever the file size.
 */
export async function fingerprintCheckpoint(c: Checkpoint): Promise<CheckpointFingerprint> {
  if (c.bytes) return fingerprintInMemory(c, c.bytes);
  const crcFailures: CrcResult[] = [];
  const digests = new Map<TensorInfo, string>();
  const byStorage = new Map<StorageInfo, TensorInfo[]>();
  for (const t of c.tensors) {
    const list = byStorage.get(t.storage) ?? [];
    list.push(t);
    byStorage.set(t.storage, list);
  }
  // Two read buffers per call, no bigger than the largest record: most LoRA copies are kilobytes,
  // and a 4 MiB buffer per small file was most of the garbage of a scan.
  let largest = 0;
  for (const s of byStorage.keys())
    largest = Math.max(largest, s.record && s.record.method === 0 ? s.record.size : s.byteLength);
  const size = Math.max(1, Math.min(CHUNK, largest));
  const bufs: [Buffer, Buffer] = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)];
  for (const [s, tensors] of byStorage) {
    const rec = s.record;
    const contiguous = tensors.filter((t) => t.contiguous);
    const active = await Promise.all(
      contiguous.map(async (t) => {
        const h = await pool.tree();
        const start = t.storageOffset * itemSize(t.dtype);
        return { t, h, start, end: start + t.byteLength };
      }),
    );
    // The CRC covers the whole record (which may be longer than the storage), so stream all of it.
    const end = rec && rec.method === 0 ? rec.size : s.byteLength;
    let crc = 0;
    await eachChunk(c, s, 0, end, bufs, (b, at) => {
      if (rec && rec.method === 0) crc = crc32(b, crc);
      for (const a of active) {
        const from = Math.max(a.start, at);
        const to = Math.min(a.end, at + b.length);
        if (from < to) a.h.t.update(b.subarray(from - at, to - at));
      }
    });
    if (rec && rec.method === 0 && crc !== rec.crc32)
      crcFailures.push({ record: rec.name, expected: rec.crc32, actual: crc });
    for (const a of active) {
      digests.set(a.t, a.h.t.digest());
      a.h.release();
    }
    for (const t of tensors) {
      if (t.contiguous) continue;
      const { t: h, release } = await pool.tree();
      await gather(c, t, (b) => h.update(b));
      digests.set(t, h.digest());
      release();
    }
  }
  // Storage records no tensor uses, data.pkl and version were CRC-checked when read (data.pkl,
  // version) or are checked here (stray records), so a flipped byte anywhere is caught.
  for (const r of strayRecords(c)) {
    const v = await c.zip!.verifyCrc(r);
    if (!v.ok) crcFailures.push({ record: r.name, expected: v.expected, actual: v.actual });
  }
  return {
    alg: DIGEST_ALG,
    tensors: c.tensors.map((t) => ({
      path: t.path,
      dtype: t.dtype,
      shape: t.shape,
      digest: digests.get(t)!,
      bytes: t.byteLength,
    })),
    crcFailures,
    crcChecked: c.format === 'torch-zip' || c.format === 'torchscript',
  };
}

/** Zip records that are not storages, data.pkl or version: CRC-checked on their own. */
function strayRecords(c: Checkpoint): readonly ZipRecord[] {
  if (!c.records) return [];
  const seen = new Set<string>();
  for (const s of c.storages.values()) if (s.record) seen.add(s.record.name);
  return c.records.filter(
    (r) => !(seen.has(r.name) || r.name.endsWith('/data.pkl') || /\/(\.data\/)?version$/.test(r.name)),
  );
}

/**
 * fingerprintCheckpoint for a file read whole (most LoRA copies): the same digests and checks, over
 * views of the bytes, without chunking or waiting (a scan does this thousands of times). The rare
 * parts that may wait (non-contiguous views, stray records) are done after the synchronous core.
 */
async function fingerprintInMemory(c: Checkpoint, bytes: Buffer): Promise<CheckpointFingerprint> {
  const crcFailures: CrcResult[] = [];
  const digests = new Map<TensorInfo, string>();
  const h = pool.treeNow() ?? (await pool.tree());
  try {
    const gathered = hashInMemory(c, bytes, h.t, digests, crcFailures);
    for (const t of gathered) {
      h.t.reset();
      await gather(c, t, (b) => h.t.update(b));
      digests.set(t, h.t.digest());
    }
  } finally {
    h.release();
  }
  const stray = strayRecords(c);
  for (const r of stray) {
    const v = await c.zip!.verifyCrc(r);
    if (!v.ok) crcFailures.push({ record: r.name, expected: v.expected, actual: v.actual });
  }
  const tensors: TensorFingerprint[] = [];
  for (const t of c.tensors)
    tensors.push({ path: t.path, dtype: t.dtype, shape: t.shape, digest: digests.get(t)!, bytes: t.byteLength });
  return { alg: DIGEST_ALG, tensors, crcFailures, crcChecked: c.format === 'torch-zip' || c.format === 'torchscript' };
}

/**
 * Each storage once, in order: its record's CRC, then its contiguous tensors' digests. Returns the
 * non-contiguous tensors, to be gathered after (storage by storage, as the streaming path orders them).
 */
function hashInMemory(
  c: Checkpoint,
  bytes: Buffer,
  h: TreeHasher,
  digests: Map<TensorInfo, string>,
  crcFailures: CrcResult[],
): TensorInfo[] {
  const byStorage = new Map<StorageInfo, TensorInfo[]>();
  for (const t of c.tensors) {
    const list = byStorage.get(t.storage);
    if (list) list.push(t);
    else byStorage.set(t.storage, [t]);
  }
  const gathered: TensorInfo[] = [];
  for (const [s, tensors] of byStorage) {
    const rec = s.record;
    const stored = !!rec && rec.method === 0;
    // The CRC covers the whole record (which may be longer than the storage).
    const len = stored ? rec.size : s.byteLength;
    let data: Uint8Array;
    if (s.inflated) data = s.inflated.subarray(0, len);
    else {
      if (s.offset + len > bytes.length)
        throw new Error(`${c.path}: file shrank while reading (offset ${bytes.length})`);
      data = bytes.subarray(s.offset, s.offset + len);
    }
    if (stored) {
      const crc = crc32(data);
      if (crc !== rec.crc32) crcFailures.push({ record: rec.name, expected: rec.crc32, actual: crc });
    }
    for (const t of tensors) {
      if (!t.contiguous) {
        gathered.push(t);
        continue;
      }
      const start = t.storageOffset * itemSize(t.dtype);
      digests.set(t, h.digestOf(data.subarray(start, start + t.byteLength)));
    }
  }
  return gathered;
}

/** The tensors inside a metadata tree count by their fingerprint, not by their storage key. */
export function tensorTypedLookup(c: Checkpoint, fp?: CheckpointFingerprint): (n: PyNode) => Typed | undefined {
  // Built on the first object node asked about: a tensor is one, and metadata of plain values (what
  // almost every file holds) never asks, so a scan builds no map for it.
  let byNode: Map<PyNode, Typed> | undefined;
  const build = () => {
    const m = new Map<PyNode, Typed>();
    c.tensors.forEach((t, i) => {
      if (!t.node) return;
      const f = fp?.tensors[i];
      m.set(t.wrapper ?? t.node, [
        t.parameter ? 'parameter' : 'tensor',
        t.dtype,
        t.shape.join('x'),
        f?.digest ?? t.path,
      ]);
    });
    return m;
  };
  return (n) => (n.kind === 'object' ? (byNode ??= build()).get(n) : undefined);
}

/**
 * Digest of a metadata subtree: its canonical typed form, with the listed top-level keys left out.
 * Stable across pickling details (memo, protocol, dict-vs-OrderedDict is kept as a difference).
 */
export async function metadataDigest(
  node: PyNode,
  excludeKeys: readonly string[] = [],
  tensor?: (n: PyNode) => Typed | undefined,
): Promise<string> {
  const entries = mappingEntries(node);
  let typed: Typed;
  if (entries) {
    const kept = entries.filter(([k]) => !(k.kind === 'str' && excludeKeys.includes(k.value)));
    typed = ['mapping', kept.map(([k, v]) => [typedForm(k, tensor, true), typedForm(v, tensor, true)])];
  } else {
    typed = typedForm(node, tensor, true);
  }
  return digestBytes(Buffer.from(JSON.stringify(typed), 'utf8'));
}
