/**
 * The structure of a zip, read and checked when a ZipReader opens: the end records (classic and
 * zip64), the central directory and each record's local header. Every structural lie raises a
 * FormatError. The parser is a generator of reads, so it runs over a file handle or bytes in memory.
 */
import type { FileHandle } from 'node:fs/promises';
import { readFull } from '../../io/readAhead';
import { FormatError } from '../errors';
import {
  CENTRAL_HEADER_SIZE,
  EOCD_SIZE,
  EXTRA_ZIP64,
  FLAG_ENCRYPTED,
  FLAG_MASKED_HEADERS,
  FLAG_STRONG_ENCRYPTION,
  FLAG_UTF8,
  LOCAL_HEADER_SIZE,
  MAX_COMMENT,
  METHOD_DEFLATE,
  METHOD_STORED,
  SIG_CENTRAL,
  SIG_EOCD,
  SIG_LOCAL,
  SIG_ZIP64_EOCD,
  SIG_ZIP64_LOCATOR,
  U16_MAX,
  U32_MAX,
  ZIP64_EOCD_SIZE,
  ZIP64_LOCATOR_SIZE,
} from './zipLayout';

export interface ZipRecord {
  /** Decoded as UTF-8 when flag bit 11 is set (torch always sets it), else as CP437. */
  name: string;
  nameBytes: Uint8Array;
  localHeaderOffset: number;
  /** Where the record's (compressed) data starts. */
  dataOffset: number;
  compressedSize: number;
  /** Uncompressed size. */
  size: number;
  /** From the central directory, unsigned. */
  crc32: number;
  method: 0 | 8;
  flags: number;
}

export interface ZipOpenOptions {
  /** Refuse archives declaring more records than this (default 200 000). */
  maxRecords?: number;
  /** Refuse central directories larger than this (default 64 MiB). */
  maxCentralDirBytes?: number;
}

const DEFAULT_MAX_RECORDS = 200_000;
const DEFAULT_MAX_CD_BYTES = 64 * 1024 * 1024;

export const bad = (msg: string, where?: string) => new FormatError('ZIP_BAD_STRUCTURE', msg, where);
export const truncated = (msg: string, where?: string) => new FormatError('ZIP_TRUNCATED', msg, where);
export const unsupported = (msg: string, where?: string) => new FormatError('ZIP_UNSUPPORTED', msg, where);

/** A u64 as a number; anything past 2^53 cannot describe a real file, so it is a structure error. */
function u64(b: Buffer, pos: number, what: string): number {
  const v = b.readBigUInt64LE(pos);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${what} is impossibly large (${v})`);
  return Number(v);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
// Upper half of code page 437, the zip default when flag bit 11 is clear.
const CP437_HIGH =
  'ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0';

function decodeName(bytes: Uint8Array, flags: number): string {
  if (flags & FLAG_UTF8) {
    try {
      return utf8.decode(bytes);
    } catch {
      throw bad('record name is not valid UTF-8 although flag bit 11 says so');
    }
  }
  let s = '';
  for (const c of bytes) s += c < 0x80 ? String.fromCharCode(c) : CP437_HIGH[c - 0x80];
  return s;
}

interface EndInfo {
  count: number;
  cdOffset: number;
  cdSize: number;
  /** First byte of the end records (zip64 EOCD when present, else the classic EOCD). */
  endStart: number;
}

/** A read the parser needs: `len` bytes at `pos` (the parser has checked the range lies inside the file). */
interface Need {
  pos: number;
  len: number;
  where?: string;
}
/** Parsing steps as a generator of reads, so one parser serves a file handle (async) and bytes in memory (sync). */
type Steps<T> = Generator<Need, T, Buffer>;

/** Runs parsing steps over bytes already in memory: no copies, no promises. */
function runOnBytes<T>(steps: Steps<T>, bytes: Buffer): T {
  let r = steps.next();
  while (!r.done) {
    const { pos, len, where } = r.value;
    if (pos + len > bytes.length) throw truncated(`file ended at ${bytes.length} while reading`, where);
    r = steps.next(bytes.subarray(pos, pos + len));
  }
  return r.value;
}

async function runOnHandle<T>(steps: Steps<T>, fh: FileHandle): Promise<T> {
  let r = steps.next();
  while (!r.done) r = steps.next(await readExact(fh, r.value.pos, r.value.len, r.value.where));
  return r.value;
}

/** Reads `len` bytes at `pos`; the caller has already checked the range lies inside the file. */
export function readExact(fh: FileHandle, pos: number, len: number, where?: string): Promise<Buffer> {
  return readInto(fh, Buffer.allocUnsafe(len), pos, where);
}

/** Fills `buf` from `pos`; a short read is only possible if the file shrank after it was opened. */
export function readInto(fh: FileHandle, buf: Buffer, pos: number, where?: string): Promise<Buffer> {
  return readFull(fh, buf, pos, (at) => truncated(`file ended at ${at} while reading`, where));
}

/** Reads and checks the end records, the central directory and every local header through `fh`. */
export async function readZipDirectory(fh: FileHandle, fileSize: number, opts: ZipOpenOptions): Promise<ZipRecord[]> {
  return runOnHandle(parseSteps(fileSize, opts), fh);
}

/** The same over a whole file held in memory, synchronously. */
export function parseZipDirectory(bytes: Buffer, opts: ZipOpenOptions): ZipRecord[] {
  return runOnBytes(parseSteps(bytes.length, opts), bytes);
}

function* parseSteps(fileSize: number, opts: ZipOpenOptions): Steps<ZipRecord[]> {
  if (fileSize === 0) throw new FormatError('EMPTY_FILE', 'file is empty');
  if (fileSize < EOCD_SIZE) throw truncated(`file of ${fileSize} bytes is shorter than a zip end record`);
  const maxRecords = opts.maxRecords ?? DEFAULT_MAX_RECORDS;
  const maxCd = opts.maxCentralDirBytes ?? DEFAULT_MAX_CD_BYTES;

  const end = yield* readEndRecords(fileSize);
  if (end.count > maxRecords) throw unsupported(`archive declares ${end.count} records, limit is ${maxRecords}`);
  if (end.cdSize > maxCd) throw unsupported(`central directory of ${end.cdSize} bytes, limit is ${maxCd}`);
  if (end.cdOffset + end.cdSize > end.endStart) {
    throw end.cdOffset + end.cdSize > fileSize
      ? truncated('central directory runs past the end of the file')
      : bad('central directory overlaps the end records');
  }
  if (end.cdOffset + end.cdSize !== end.endStart) throw bad('bytes between the central directory and the end records');
  if (end.count * CENTRAL_HEADER_SIZE > end.cdSize)
    throw bad(`${end.count} records cannot fit in a ${end.cdSize}-byte central directory`);

  const cd = yield { pos: end.cdOffset, len: end.cdSize };
  const records = parseCentralDirectory(cd, end.count, end.cdOffset);
  for (const rec of records)
    checkLocalHeader(
      yield { pos: rec.localHeaderOffset, len: LOCAL_HEADER_SIZE + rec.nameBytes.length, where: rec.name },
      rec,
      end.cdOffset,
    );
  checkOverlaps(records);
  return records;
}

/** Finds the classic EOCD (scanning back over at most a 65535-byte comment) and follows the zip64 locator. */
function* readEndRecords(fileSize: number): Steps<EndInfo> {
  const tailLen = Math.min(fileSize, EOCD_SIZE + MAX_COMMENT + ZIP64_LOCATOR_SIZE + ZIP64_EOCD_SIZE);
  const tailStart = fileSize - tailLen;
  const tail = yield { pos: tailStart, len: tailLen };

  let eocd = -1;
  let sawSignature = false;
  for (let i = tailLen - EOCD_SIZE; i >= 0 && tailLen - i - EOCD_SIZE <= MAX_COMMENT; i--) {
    if (tail.readUInt32LE(i) !== SIG_EOCD) continue;
    sawSignature = true;
    // The comment must end exactly at the end of the file: a signature-like sequence inside
    // a comment or data, or trailing bytes after the comment, do not count.
    if (i + EOCD_SIZE + tail.readUInt16LE(i + 20) === tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    throw sawSignature
      ? bad('end-of-central-directory comment length does not match the file end')
      : truncated('no end-of-central-directory record (truncated or not a zip)');
  }

  const disk = tail.readUInt16LE(eocd + 4);
  const cdDisk = tail.readUInt16LE(eocd + 6);
  const onDisk = tail.readUInt16LE(eocd + 8);
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (disk !== 0 || cdDisk !== 0 || onDisk !== count) throw unsupported('multi-disk archive');
  let endStart = tailStart + eocd;

  const loc = eocd - ZIP64_LOCATOR_SIZE;
  if (loc >= 0 && tail.readUInt32LE(loc) === SIG_ZIP64_LOCATOR) {
    const z64Disk = tail.readUInt32LE(loc + 4);
    const z64Offset = u64(tail, loc + 8, 'zip64 end record offset');
    const disks = tail.readUInt32LE(loc + 16);
    if (z64Disk !== 0 || disks > 1) throw unsupported('multi-disk archive');
    const locatorPos = tailStart + loc;
    if (z64Offset + ZIP64_EOCD_SIZE > locatorPos) {
      throw z64Offset >= fileSize
        ? truncated('zip64 end record lies past the end of the file')
        : bad('zip64 end record overlaps its locator');
    }
    const z = yield { pos: z64Offset, len: ZIP64_EOCD_SIZE };
    if (z.readUInt32LE(0) !== SIG_ZIP64_EOCD) throw bad('zip64 locator does not point at a zip64 end record');
    if (u64(z, 4, 'zip64 end record size') + 12 !== locatorPos - z64Offset) {
      throw bad('zip64 end record size does not reach its locator');
    }
    if (z.readUInt32LE(16) !== 0 || z.readUInt32LE(20) !== 0) throw unsupported('multi-disk archive');
    const z64OnDisk = u64(z, 24, 'record count');
    const z64Count = u64(z, 32, 'record count');
    const z64CdSize = u64(z, 40, 'central directory size');
    const z64CdOffset = u64(z, 48, 'central directory offset');
    if (z64OnDisk !== z64Count) throw unsupported('multi-disk archive');
    // Classic fields either saturate (meaning "see zip64") or must agree with the zip64 record.
    if (
      (count !== U16_MAX && count !== z64Count) ||
      (cdSize !== U32_MAX && cdSize !== z64CdSize) ||
      (cdOffset !== U32_MAX && cdOffset !== z64CdOffset)
    ) {
      throw bad('classic and zip64 end records disagree');
    }
    count = z64Count;
    cdSize = z64CdSize;
    cdOffset = z64CdOffset;
    endStart = z64Offset;
  }
  return { count, cdOffset, cdSize, endStart };
}

function parseCentralDirectory(cd: Buffer, count: number, cdOffset: number): ZipRecord[] {
  const records: ZipRecord[] = [];
  const names = new Set<string>();
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + CENTRAL_HEADER_SIZE > cd.length) throw bad(`${entryAt(i, cdOffset + p)} runs past the central directory`);
    if (cd.readUInt32LE(p) !== SIG_CENTRAL) throw bad(`${entryAt(i, cdOffset + p)} has a bad signature`);
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const crc32 = cd.readUInt32LE(p + 16);
    let compressedSize = cd.readUInt32LE(p + 20);
    let size = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    const disk = cd.readUInt16LE(p + 34);
    let localHeaderOffset = cd.readUInt32LE(p + 42);
    const varStart = p + CENTRAL_HEADER_SIZE;
    const next = varStart + nameLen + extraLen + commentLen;
    if (next > cd.length) throw bad(`${entryAt(i, cdOffset + p)} runs past the central directory`);

    const nameBytes = new Uint8Array(cd.subarray(varStart, varStart + nameLen));
    const name = decodeName(nameBytes, flags);
    if (flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION | FLAG_MASKED_HEADERS))
      throw unsupported('encrypted record', name);
    if (method !== METHOD_STORED && method !== METHOD_DEFLATE) throw unsupported(`compression method ${method}`, name);
    if (disk !== 0) throw unsupported('multi-disk archive', name);

    // zip64 extra: values appear only for the fields saturated to 0xFFFFFFFF, in this order.
    const extra = cd.subarray(varStart + nameLen, varStart + nameLen + extraLen);
    const wantSize = size === U32_MAX;
    const wantCompressed = compressedSize === U32_MAX;
    const wantOffset = localHeaderOffset === U32_MAX;
    const z64 = extraLen === 0 ? undefined : findExtra(extra, EXTRA_ZIP64, name);
    if (wantSize || wantCompressed || wantOffset) {
      if (!z64) throw bad('saturated size or offset without a zip64 extra field', name);
      let q = 0;
      const take = (what: string): number => {
        if (q + 8 > z64.length) throw bad(`zip64 extra field too short for the ${what}`, name);
        const v = u64(z64, q, what);
        q += 8;
        return v;
      };
      if (wantSize) size = take('size');
      if (wantCompressed) compressedSize = take('compressed size');
      if (wantOffset) localHeaderOffset = take('local header offset');
    }

    if (names.has(name)) throw new FormatError('ZIP_DUPLICATE_NAME', `record name ${name} appears twice`, name);
    names.add(name);
    if (method === METHOD_STORED && compressedSize !== size) {
      throw bad(`stored record with compressed size ${compressedSize} ≠ size ${size}`, name);
    }
    if (localHeaderOffset + LOCAL_HEADER_SIZE + nameLen + compressedSize > cdOffset) {
      throw truncated('record data would run into the central directory or past the file end', name);
    }
    records.push({
      name,
      nameBytes,
      localHeaderOffset,
      dataOffset: -1, // filled from the local header
      compressedSize,
      size,
      crc32,
      method,
      flags,
    });
    p = next;
  }
  if (p !== cd.length) throw bad(`central directory has ${cd.length - p} bytes after its ${count} entries`);
  return records;
}

/** Where an entry of the central directory is, for errors only. */
const entryAt = (i: number, pos: number) => `central directory entry ${i} (at ${pos})`;

function findExtra(extra: Buffer, id: number, where: string): Buffer | undefined {
  let found: Buffer | undefined;
  let p = 0;
  while (p + 4 <= extra.length) {
    const len = extra.readUInt16LE(p + 2);
    if (p + 4 + len > extra.length) throw bad('extra field runs past its declared length', where);
    if (extra.readUInt16LE(p) === id && !found) found = extra.subarray(p + 4, p + 4 + len);
    p += 4 + len;
  }
  return found;
}

/**
 * One local header (with its name; parseCentralDirectory guaranteed both fit before the central
 * directory) says where the data starts; name and method must match the central directory.
 */
function checkLocalHeader(h: Buffer, rec: ZipRecord, cdOffset: number): void {
  if (h.readUInt32LE(0) !== SIG_LOCAL) throw bad(`no local header at ${rec.localHeaderOffset}`, rec.name);
  const flags = h.readUInt16LE(6);
  if (flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION | FLAG_MASKED_HEADERS))
    throw unsupported('encrypted record', rec.name);
  if (h.readUInt16LE(8) !== rec.method) throw bad('local and central compression methods differ', rec.name);
  const nameLen = h.readUInt16LE(26);
  const extraLen = h.readUInt16LE(28);
  if (nameLen !== rec.nameBytes.length || !h.subarray(LOCAL_HEADER_SIZE).equals(rec.nameBytes)) {
    throw bad('local header name differs from the central directory name', rec.name);
  }
  rec.dataOffset = rec.localHeaderOffset + LOCAL_HEADER_SIZE + nameLen + extraLen;
  if (rec.dataOffset + rec.compressedSize > cdOffset) {
    throw truncated('record data would run into the central directory or past the file end', rec.name);
  }
  // A deflate stream cannot expand more than ~1032:1; a bigger claim is a lie or a bomb.
  if (rec.method === METHOD_DEFLATE && rec.size > rec.compressedSize * 1032 + 1024) {
    throw bad(`declared size ${rec.size} is impossible for ${rec.compressedSize} compressed bytes`, rec.name);
  }
}

/** Two records may not claim the same bytes (header through end of data). */
function checkOverlaps(records: ZipRecord[]): void {
  const sorted = [...records].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    const cur = sorted[i];
    if (cur.localHeaderOffset < prev.dataOffset + prev.compressedSize) {
      throw new FormatError('ZIP_OVERLAP', `records ${prev.name} and ${cur.name} overlap`, cur.name);
    }
  }
}
