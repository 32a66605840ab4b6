/**
 * The checkpoint model: one view over the three on-disk formats (torch zip, legacy torch,
 * safetensors). Opening reads only headers, the pickle and the zip directory; tensor bytes stay on
 * disk and are streamed later (fingerprint, write). Nothing from a pickle is ever executed.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { FormatError, isFormatError } from './errors';
import { type DecodedPickle, decodePickle } from './pickle/decoder';
import type { PyGlobal, PyNode } from './pickle/nodes';
import { ZipReader, type ZipRecord } from './zip/zipReader';
import { type TorchDtype, dtypeFromSafetensors, itemSize, numelOf } from './dtypes';
import { findTensors, isContiguous, type StrayStorage, type TensorCall } from './torch/torchPickle';
import { looksLegacy, readLegacy } from './torch/legacy';
import { isSafetensors, readSafetensors } from './safetensors';
import { safetyFindings, type SafetyFinding } from './safety';
import {
  LEGACY_PICKLES,
  plainlySafe,
  scanDataPkl,
  scanLegacyStream,
  scanZipLeniently,
  startsLikePickle,
  trailingAfterFirst,
  withFindings,
} from './fileSafety';
import { MemoryHandle } from '../io/memoryHandle';
import { readSmallFile } from '../io/smallFile';

export type CheckpointFormat = 'torch-zip' | 'torch-legacy' | 'torchscript' | 'safetensors';

/** Where one storage's bytes live. */
export interface StorageInfo {
  key: string;
  dtype: TorchDtype;
  /** Elements in the whole storage. */
  numel: number;
  /** Absolute file offset of element 0 (STORED zip records, legacy, safetensors). */
  offset: number;
  byteLength: number;
  /** Zip only: the `data/<key>` record, whose CRC guards these bytes. */
  record?: ZipRecord;
  /** A DEFLATEd zip record (only Python's zipfile writes those) is inflated once into memory. */
  inflated?: Buffer;
}

export interface TensorInfo {
  /** Dotted path: `lora_params.layers.0.lora_A`; the header name for safetensors. */
  path: string;
  dtype: TorchDtype;
  shape: number[];
  stride: number[];
  /** In elements. */
  storageOffset: number;
  storage: StorageInfo;
  requiresGrad: boolean;
  parameter: boolean;
  contiguous: boolean;
  /** numel × item size of the view. */
  byteLength: number;
  /** The rebuild node in the pickle tree (torch formats). */
  node?: PyNode;
  /** For an nn.Parameter, the `_rebuild_parameter` node around `node` (what sits at `path`). */
  wrapper?: PyNode;
}

export interface Checkpoint {
  path: string;
  format: CheckpointFormat;
  fileSize: number;
  /** Zip: the archive folder (`LoRA_A` or `archive`). */
  prefix?: string;
  /** Zip: the `version` record's text, trimmed. */
  version?: string;
  /** Zip: every record, in directory order. */
  records?: readonly ZipRecord[];
  /** Torch formats: the decoded object. Safetensors: undefined (see `safetensorsMetadata`). */
  root?: PyNode;
  pickleProtocol?: number;
  /** The raw data.pkl (zip) so a writer can prove byte-identical round trips. */
  tensors: TensorInfo[];
  storages: Map<string, StorageInfo>;
  /**
   * Torch formats: storages named outside a plain tensor (a quantized tensor, a storage saved on its
   * own; torchPickle.ts StrayStorage). Non-empty: the file holds data the model cannot compare or
   * copy, so it is left out of the copy map (loraFile.ts).
   */
  strays?: StrayStorage[];
  globals: PyGlobal[];
  /** Globals outside the data-only allowlist: non-empty means `torch.load` would run code. */
  unsafe: SafetyFinding[];
  safetensorsMetadata?: Record<string, string> | null;
  /** Open handle for streaming tensor bytes; closed by `close()`. */
  fh: FileHandle;
  /** True when the file was small enough to be read whole: `fh` then serves bytes from memory. */
  inMemory: boolean;
  /** The whole file when `inMemory` (read-only: views of it are handed out). */
  bytes?: Buffer;
  zip?: ZipReader;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Max bytes of data.pkl we agree to decode (default 256 MiB). */
  maxPickleBytes?: number;
  /**
   * The size the caller just saw (a scan's lstat): a small file is then read with open, one read
   * and close, without a stat of its own. A file that has grown past it is read the usual way.
   */
  expectedSize?: number;
}

const ZIP_MAGIC = Buffer.from('504b0304', 'hex');
/** Bytes of DEFLATEd storages one checkpoint may inflate into memory (torch itself never deflates). */
const MAX_INFLATED_TOTAL = 512 * 1024 * 1024;

/** Reads the first bytes and says which format a file is, without trusting its name. */
export function sniffFormat(head: Uint8Array, fileSize: number): 'zip' | 'legacy' | 'safetensors' | undefined {
  if (head.length >= 4 && Buffer.from(head.buffer, head.byteOffset, 4).equals(ZIP_MAGIC)) return 'zip';
  if (looksLegacy(head)) return 'legacy';
  if (isSafetensors(head, fileSize)) return 'safetensors';
  return undefined;
}

export async function openCheckpoint(path: string, opts: OpenOptions = {}): Promise<Checkpoint> {
  // Small files (most LoRA copies are kilobytes) are read whole and parsed from memory; larger ones
  // are read positionally, asynchronously, a chunk at a time.
  const small = readSmallFile(path, opts.expectedSize);
  const fh: FileHandle = small ? new MemoryHandle(small).asFileHandle() : await open(path, 'r');
  try {
    const size = small ? small.length : (await fh.stat()).size;
    if (size === 0) throw new FormatError('EMPTY_FILE', 'the file is empty');
    let head: Buffer;
    if (small) head = small.subarray(0, 64);
    else {
      head = Buffer.alloc(Math.min(size, 64));
      await fh.read(head, 0, head.length, 0);
    }
    switch (sniffFormat(head, size)) {
      // (each opener builds the whole record in one literal: spreading a record this size is slow)
      case 'zip':
        return await openZip(path, fh, size, opts, small);
      case 'legacy':
        return await openLegacy(path, fh, size, small);
      case 'safetensors':
        return await openSafetensors(path, fh, size, small);
      default:
        // torch.load unpickles such a file before it checks the magic number: judge what it would run.
        if (startsLikePickle(head)) await judgePlainPickle(fh, size, small);
        throw new FormatError('NOT_A_CHECKPOINT', 'not a torch checkpoint (zip or legacy) nor a safetensors file');
    }
  } catch (e) {
    await fh.close().catch(() => undefined);
    throw e;
  }
}

/** A plain pickle (no legacy header): a finding makes it an unsafe file, not merely an unrecognized one. */
async function judgePlainPickle(fh: FileHandle, size: number, bytes?: Buffer): Promise<void> {
  const { findings } = await scanLegacyStream(fh, size, bytes);
  if (findings.length)
    throw withFindings(
      new FormatError(
        'NOT_A_CHECKPOINT',
        'a plain pickle, not a torch checkpoint: torch.load unpickles it (running what it names) before it checks the magic number',
      ),
      findings,
    );
}

/** Scan findings first, then any global the decoder listed that the scan did not (belt and braces). */
function mergeFindings(scanned: SafetyFinding[], decodedGlobals: PyGlobal[]): SafetyFinding[] {
  const out = [...scanned];
  const seen = new Set(scanned.map((f) => f.global));
  for (const f of safetyFindings(decodedGlobals)) if (!seen.has(f.global)) out.push(f);
  return out;
}

/** Opens, runs `fn`, always closes. */
export async function withCheckpoint<T>(
  path: string,
  fn: (c: Checkpoint) => Promise<T>,
  opts?: OpenOptions,
): Promise<T> {
  const c = await openCheckpoint(path, opts);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

function tensorInfos(calls: TensorCall[], storages: Map<string, StorageInfo>): TensorInfo[] {
  return calls.map((t) => {
    const key = t.storage.legacyView?.rootKey ?? t.storage.key;
    const s = storages.get(key);
    if (!s)
      throw new FormatError(
        'MISSING_RECORD',
        `tensor ${t.path} uses storage ${key}, which the file does not contain`,
        t.path,
      );
    if (s.dtype !== t.storage.dtype)
      throw new FormatError('BAD_TENSOR', `storage ${key} is used as ${s.dtype} and ${t.storage.dtype}`, t.path);
    const storageOffset = t.storageOffset + (t.storage.legacyView?.offset ?? 0);
    return {
      path: t.path,
      dtype: t.storage.dtype,
      shape: t.shape,
      stride: t.stride,
      storageOffset,
      storage: s,
      requiresGrad: t.requiresGrad,
      parameter: t.parameter,
      contiguous: isContiguous(t.shape, t.stride),
      byteLength: numelOf(t.shape) * itemSize(t.storage.dtype),
      node: t.node,
      wrapper: t.wrapper,
    };
  });
}

async function openZip(
  path: string,
  fh: FileHandle,
  size: number,
  opts: OpenOptions,
  bytes?: Buffer,
): Promise<Checkpoint> {
  let zip: ZipReader;
  try {
    zip = bytes ? ZipReader.fromBytes(bytes) : await ZipReader.fromFileHandle(fh, size);
  } catch (e) {
    // Refused here, perhaps read by torch's laxer reader: its data.pkl is judged all the same.
    throw isFormatError(e) ? withFindings(e, await scanZipLeniently(fh, size, bytes)) : e;
  }
  // torch.load takes the one record named <prefix>/data.pkl; records outside a folder are rejected.
  const pkl = zip.records.filter((r) => /^[^/]+\/data\.pkl$/.test(r.name));
  if (pkl.length === 0)
    throw new FormatError('MISSING_RECORD', 'no <archive>/data.pkl record: not a torch checkpoint', 'data.pkl');
  const pklOpts = { maxBytes: opts.maxPickleBytes ?? 256 * 1024 * 1024 };
  if (pkl.length > 1) {
    // Which one a loader takes is its own business: each is judged.
    const findings: SafetyFinding[] = [];
    for (const r of pkl) {
      const b = zip.readInMemory(r, pklOpts) ?? (await zip.read(r, pklOpts));
      findings.push(...scanDataPkl(b, r.name).findings);
    }
    throw withFindings(new FormatError('ZIP_BAD_STRUCTURE', 'more than one data.pkl record'), findings);
  }
  const pickleBytes = zip.readInMemory(pkl[0], pklOpts) ?? (await zip.read(pkl[0], pklOpts));
  // One walk over the pickle when it is plainly safe (fileSafety.ts plainlySafe): the decoder's;
  // otherwise the safety scan walks it too, on its own, as it always did. A decode error is raised
  // where openZipPickle decodes, after its record checks, as before.
  let decoded: DecodedPickle | Error;
  try {
    decoded = decodePickle(pickleBytes);
  } catch (e) {
    decoded = e as Error;
  }
  const safety =
    decoded instanceof Error || !plainlySafe(decoded, pickleBytes.length)
      ? scanDataPkl(pickleBytes, pkl[0].name)
      : { findings: [], scan: undefined };
  try {
    return await openZipPickle(path, fh, size, zip, pkl[0], pickleBytes, safety.findings, bytes, safety.scan, decoded);
  } catch (e) {
    throw withFindings(e, safety.findings);
  }
}

async function openZipPickle(
  path: string,
  fh: FileHandle,
  size: number,
  zip: ZipReader,
  pklRecord: ZipRecord,
  pickleBytes: Buffer,
  findings: SafetyFinding[],
  bytes: Buffer | undefined,
  scan: ReturnType<typeof scanDataPkl>['scan'] | undefined,
  decodedOrError: DecodedPickle | Error,
): Promise<Checkpoint> {
  const pkl = [pklRecord];
  const prefix = pkl[0].name.slice(0, -'/data.pkl'.length);
  const versionRec = zip.get(`${prefix}/version`) ?? zip.get(`${prefix}/.data/version`);
  if (!versionRec) throw new FormatError('MISSING_RECORD', `no ${prefix}/version record`, `${prefix}/version`);
  const version = (zip.readInMemory(versionRec, { maxBytes: 64 }) ?? (await zip.read(versionRec, { maxBytes: 64 })))
    .toString('latin1')
    .trim();
  if (!/^\d+$/.test(version))
    throw new FormatError('BAD_VERSION', `version record says ${JSON.stringify(version.slice(0, 20))}`);
  const format: CheckpointFormat = zip.get(`${prefix}/constants.pkl`) ? 'torchscript' : 'torch-zip';
  if (decodedOrError instanceof Error) throw decodedOrError;
  const decoded = decodedOrError;
  // (no scan: the pickle ended at its last byte, see plainlySafe)
  const trailing = scan ? trailingAfterFirst(scan, pickleBytes.length) : undefined;
  if (trailing !== undefined)
    throw new FormatError(
      'TRAILING_DATA',
      `${pickleBytes.length - trailing} bytes follow the pickle's STOP in ${pkl[0].name} (torch.save writes none)`,
      pkl[0].name,
    );
  const strays: StrayStorage[] = [];
  const calls = findTensors(decoded.root, strays);
  // Each DEFLATE storage is inflated into memory: bound their sum before inflating any (a zip bomb
  // of many honest 500 MB records in a 5 MB file would otherwise take gigabytes).
  let inflatedTotal = 0;
  for (const key of new Set(calls.map((t) => t.storage.key))) {
    const rec = zip.get(`${prefix}/data/${key}`);
    if (rec?.method === 8) inflatedTotal += rec.size;
  }
  if (inflatedTotal > MAX_INFLATED_TOTAL)
    throw new FormatError(
      'ZIP_UNSUPPORTED',
      `deflated storages would take ${inflatedTotal} bytes in memory, over ${MAX_INFLATED_TOTAL}`,
    );
  const storages = new Map<string, StorageInfo>();
  for (const t of calls) {
    const key = t.storage.key;
    if (storages.has(key)) continue;
    const rec = zip.get(`${prefix}/data/${key}`);
    if (!rec)
      throw new FormatError(
        'MISSING_RECORD',
        `storage record ${prefix}/data/${key} is missing`,
        `${prefix}/data/${key}`,
      );
    const byteLength = t.storage.numel * itemSize(t.storage.dtype);
    if (rec.size < byteLength) {
      throw new FormatError(
        'BAD_TENSOR',
        `record ${rec.name} holds ${rec.size} bytes, its storage needs ${byteLength}`,
        rec.name,
      );
    }
    const inflated = rec.method === 8 ? await zip.read(rec) : undefined;
    storages.set(key, {
      key,
      dtype: t.storage.dtype,
      numel: t.storage.numel,
      offset: rec.dataOffset,
      byteLength,
      record: rec,
      inflated,
    });
  }
  return {
    path,
    format,
    fileSize: size,
    prefix,
    version,
    records: zip.records,
    root: decoded.root,
    pickleProtocol: decoded.protocol,
    tensors: tensorInfos(calls, storages),
    storages,
    strays,
    globals: decoded.globals,
    unsafe: mergeFindings(findings, decoded.globals),
    fh,
    zip,
    close: () => fh.close(),
    inMemory: !!bytes,
    bytes,
  };
}

async function openLegacy(path: string, fh: FileHandle, size: number, bytes?: Buffer): Promise<Checkpoint> {
  const safety = await scanLegacyStream(fh, size, bytes);
  try {
    return await openLegacyChecked(path, fh, size, bytes, safety.findings, safety.scan.pickles);
  } catch (e) {
    throw withFindings(e, safety.findings);
  }
}

async function openLegacyChecked(
  path: string,
  fh: FileHandle,
  size: number,
  bytes: Buffer | undefined,
  findings: SafetyFinding[],
  pickles: ReadonlyArray<{ end: number }>,
): Promise<Checkpoint> {
  const legacy = await readLegacy(fh, size);
  const strays: StrayStorage[] = [];
  const calls = findTensors(legacy.object.root, strays);
  const storages = new Map<string, StorageInfo>();
  for (const t of calls) {
    const key = t.storage.legacyView?.rootKey ?? t.storage.key;
    if (storages.has(key)) continue;
    const loc = legacy.storages.get(key);
    if (!loc) throw new FormatError('MISSING_RECORD', `storage ${key} is not in the file`, key);
    if (loc.numel < t.storage.numel && !t.storage.legacyView) {
      throw new FormatError(
        'BAD_TENSOR',
        `storage ${key} holds ${loc.numel} elements, a tensor needs ${t.storage.numel}`,
        key,
      );
    }
    storages.set(key, {
      key,
      dtype: t.storage.dtype,
      numel: loc.numel,
      offset: loc.offset,
      byteLength: loc.numel * itemSize(t.storage.dtype),
    });
  }
  // torch.save ends the file with the last storage (or the storage keys when there is none).
  let end = pickles.length >= LEGACY_PICKLES ? pickles[LEGACY_PICKLES - 1].end : size;
  for (const s of legacy.storages.values()) {
    const info = storages.get(s.key);
    end = Math.max(end, s.offset + (info ? info.byteLength : 0));
  }
  // (A stray storage's size is unknown here: its bytes would count as trailing.)
  if (end < size && !strays.length)
    throw new FormatError(
      'TRAILING_DATA',
      `${size - end} bytes follow the last storage of this legacy checkpoint (torch.save writes none)`,
    );
  return {
    path,
    format: 'torch-legacy',
    fileSize: size,
    root: legacy.object.root,
    pickleProtocol: legacy.object.protocol,
    tensors: tensorInfos(calls, storages),
    storages,
    strays,
    globals: legacy.globals,
    unsafe: mergeFindings(findings, legacy.globals),
    fh,
    close: () => fh.close(),
    inMemory: !!bytes,
    bytes,
  };
}

async function openSafetensors(path: string, fh: FileHandle, size: number, bytes?: Buffer): Promise<Checkpoint> {
  // torch.load reads a safetensors file down its legacy path too, as a pickle from byte 0: a crafted
  // header length can land the unpickler inside the JSON header. Judged like any plain pickle.
  const head = bytes ?? Buffer.alloc(0);
  const { findings } = bytes && !startsLikePickle(head) ? { findings: [] } : await scanLegacyStream(fh, size, bytes);
  let st: Awaited<ReturnType<typeof readSafetensors>>;
  try {
    st = await readSafetensors(fh, size);
  } catch (e) {
    throw withFindings(e, findings);
  }
  const storages = new Map<string, StorageInfo>();
  const tensors: TensorInfo[] = st.tensors.map((t) => {
    const dtype = dtypeFromSafetensors(t.dtype);
    if (!dtype)
      throw new FormatError('SAFETENSORS_BAD_TENSOR', `dtype ${t.dtype} has no torch equivalent we handle`, t.name);
    const numel = numelOf(t.shape);
    const s: StorageInfo = { key: t.name, dtype, numel, offset: t.begin, byteLength: t.end - t.begin };
    storages.set(t.name, s);
    // C-contiguous strides, as safetensors stores every tensor.
    const stride = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    return {
      path: t.name,
      dtype,
      shape: t.shape,
      stride,
      storageOffset: 0,
      storage: s,
      requiresGrad: false,
      parameter: false,
      contiguous: true,
      byteLength: t.end - t.begin,
    };
  });
  return {
    path,
    format: 'safetensors',
    fileSize: size,
    tensors,
    storages,
    globals: [],
    unsafe: findings,
    safetensorsMetadata: st.metadata,
    fh,
    close: () => fh.close(),
    inMemory: !!bytes,
    bytes,
  };
}
