/**
 * The pre-1.6 torch format (`_use_new_zipfile_serialization=False`): five pickles back to back
 * (magic number, protocol version, sys_info, the object, the list of storage keys), then each storage
 * as an 8-byte little-endian element count followed by its raw bytes. We read the pickles from the
 * head of the file and only locate the storages (no tensor bytes are read here).
 */
import type { FileHandle } from 'node:fs/promises';
import { readUpTo } from '../../io/readAhead';
import { FormatError, isFormatError } from '../errors';
import { decodePickle, type DecodedPickle } from '../pickle/decoder';
import { type PyGlobal, type PyNode, getKey } from '../pickle/nodes';
import { dtypeFromStorageClass, itemSize } from '../dtypes';
import { findTensors, type StrayStorage } from './torchPickle';

export const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
/** `80 02 8a 0a` + the magic number as a 10-byte LONG1: how a legacy file of the default protocol (2) starts. */
export const LEGACY_HEAD = Buffer.from('80028a0a6cfc9c46f9206aa85019', 'hex');

export interface LegacyStorage {
  key: string;
  offset: number;
  numel: number;
}

export interface LegacyFile {
  object: DecodedPickle;
  globals: PyGlobal[];
  /** Storage key -> where its bytes start in the file and how many elements the file says it holds. */
  storages: Map<string, LegacyStorage>;
}

/** The magic number as a LONG1 (`8a 0a` + 10 bytes): what follows PROTO (and, from protocol 4, a FRAME). */
const MAGIC_LONG = LEGACY_HEAD.subarray(2);

/**
 * Whether a file starts as torch.save's legacy format does: PROTO 2 to 5 (`pickle_protocol=`), a
 * FRAME from protocol 4 on (`95` + 8 bytes), then the magic number. Protocols 0 and 1 spell the
 * number in text; torch.save in them is too rare to sniff for.
 */
export function looksLegacy(head: Uint8Array): boolean {
  if (head.length < 2 || head[0] !== 0x80 || head[1] < 2 || head[1] > 5) return false;
  const at = head[1] >= 4 && head[2] === 0x95 ? 11 : 2;
  if (head.length < at + MAGIC_LONG.length) return false;
  return Buffer.from(head.buffer, head.byteOffset + at, MAGIC_LONG.length).equals(MAGIC_LONG);
}

const MAX_HEAD = 512 * 1024 * 1024;

/** Up to `len` bytes at `pos`: fewer if the file ends first (the parse then finds it truncated). */
async function readAt(fh: FileHandle, pos: number, len: number): Promise<Buffer> {
  const buf = Buffer.alloc(len);
  const got = await readUpTo(fh, buf, pos);
  return got === len ? buf : buf.subarray(0, got);
}

export async function readLegacy(fh: FileHandle, fileSize: number): Promise<LegacyFile> {
  // The pickles are at the head; read a window and grow it while a pickle runs past its end.
  let window = Math.min(fileSize, 1 << 20);
  for (;;) {
    const head = await readAt(fh, 0, window);
    try {
      return await parseFrom(fh, fileSize, head);
    } catch (e) {
      const truncated = isFormatError(e) && e.code === 'PICKLE_TRUNCATED';
      if (!truncated || window >= fileSize || window >= MAX_HEAD) throw e;
      window = Math.min(fileSize, window * 4, MAX_HEAD);
    }
  }
}

/** Bytes per element of storage classes that hold no plain tensor's dtype (quantized, untyped). */
const STRAY_ITEM_SIZES: Record<string, number> = {
  QInt8Storage: 1,
  QUInt8Storage: 1,
  QUInt4x2Storage: 1,
  QUInt2x4Storage: 1,
  QInt32Storage: 4,
  UntypedStorage: 1,
};

function strayItemSize(cls: string): number | undefined {
  const dtype = dtypeFromStorageClass(cls);
  return dtype ? itemSize(dtype) : STRAY_ITEM_SIZES[cls];
}

async function parseFrom(fh: FileHandle, fileSize: number, head: Buffer): Promise<LegacyFile> {
  let pos = 0;
  const next = (what: string) => {
    if (pos >= head.length) throw new FormatError('PICKLE_TRUNCATED', `legacy checkpoint ends before its ${what}`);
    const p = decodePickle(head.subarray(pos));
    pos += p.end;
    return p;
  };
  const magic = next('magic number');
  if (magic.root.kind !== 'int' || magic.root.value !== LEGACY_MAGIC)
    throw new FormatError('NOT_A_CHECKPOINT', 'legacy header: wrong magic number');
  const proto = next('protocol version');
  if (proto.root.kind !== 'int' || proto.root.value !== 1001n)
    throw new FormatError('BAD_VERSION', 'legacy header: unsupported protocol version');
  const sysInfo = next('sys_info');
  const le = getKey(sysInfo.root, 'little_endian');
  if (le && le.kind === 'bool' && !le.value)
    throw new FormatError('BAD_VERSION', 'legacy checkpoint was written big-endian');
  const object = next('object');
  const keysP = next('storage keys');
  if (keysP.root.kind !== 'list') throw new FormatError('BAD_TENSOR', 'legacy storage key list is not a list');
  const keys = keysP.root.items.map((k: PyNode) => {
    if (k.kind !== 'str') throw new FormatError('BAD_TENSOR', 'legacy storage key is not a string');
    return k.value;
  });
  // Each storage's byte length depends on its element type, which only the object pickle names.
  const sizes = new Map<string, number>();
  const strays: StrayStorage[] = [];
  for (const t of findTensors(object.root, strays))
    sizes.set(t.storage.legacyView?.rootKey ?? t.storage.key, itemSize(t.storage.dtype));
  // A storage outside a plain tensor (a quantized tensor's) is located too, so the file reads as what
  // it is (left alone, checkpoint.ts `strays`) rather than as a storage no tensor uses.
  for (const x of strays) {
    const size = x.storageClass ? strayItemSize(x.storageClass) : undefined;
    if (size !== undefined && !sizes.has(x.key)) sizes.set(x.key, size);
  }
  const storages = new Map<string, LegacyStorage>();
  for (const key of keys) {
    if (pos + 8 > fileSize) throw new FormatError('ZIP_TRUNCATED', `legacy checkpoint ends inside storage ${key}`);
    const hdr = await readAt(fh, pos, 8);
    if (hdr.length < 8) throw new FormatError('ZIP_TRUNCATED', `legacy checkpoint ends inside storage ${key}`);
    const numel = hdr.readBigUInt64LE(0);
    if (numel > BigInt(Number.MAX_SAFE_INTEGER))
      throw new FormatError('BAD_TENSOR', `storage ${key} declares ${numel} elements`);
    const item = sizes.get(key);
    const len = Number(numel) * (item ?? 1);
    const offset = pos + 8;
    if (item === undefined) throw new FormatError('BAD_TENSOR', `storage ${key} is listed but no tensor uses it`);
    if (offset + len > fileSize) throw new FormatError('ZIP_TRUNCATED', `storage ${key} runs past the end of the file`);
    if (storages.has(key)) throw new FormatError('ZIP_DUPLICATE_NAME', `storage ${key} is listed twice`);
    storages.set(key, { key, offset, numel: Number(numel) });
    pos = offset + len;
  }
  const globals = [...magic.globals, ...proto.globals, ...sysInfo.globals, ...object.globals, ...keysP.globals];
  return { object, globals, storages };
}
