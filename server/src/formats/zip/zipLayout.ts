/**
 * Byte layout of the zip records torch 1.13 writes (miniz via PyTorchStreamWriter), as pure functions.
 * Kept free of I/O so the ≥ 4 GiB rules can be unit-tested without writing 4 GiB.
 * The format and what is checked: docs/formats.md.
 */

export const SIG_LOCAL = 0x04034b50; // PK\3\4
export const SIG_CENTRAL = 0x02014b50; // PK\1\2
export const SIG_EOCD = 0x06054b50; // PK\5\6
export const SIG_ZIP64_EOCD = 0x06064b50; // PK\6\6
export const SIG_ZIP64_LOCATOR = 0x07064b50; // PK\6\7
export const SIG_DATA_DESCRIPTOR = 0x08074b50; // PK\7\8

export const LOCAL_HEADER_SIZE = 30;
export const CENTRAL_HEADER_SIZE = 46;
export const EOCD_SIZE = 22;
export const ZIP64_EOCD_SIZE = 56;
export const ZIP64_LOCATOR_SIZE = 20;
export const MAX_COMMENT = 0xffff;

export const EXTRA_ZIP64 = 0x0001;
export const EXTRA_TORCH_PAD = 0x4246; // 'FB'
export const U16_MAX = 0xffff;
export const U32_MAX = 0xffffffff;

export const FLAG_ENCRYPTED = 0x0001;
export const FLAG_DATA_DESCRIPTOR = 0x0008;
export const FLAG_STRONG_ENCRYPTION = 0x0040;
export const FLAG_UTF8 = 0x0800;
export const FLAG_MASKED_HEADERS = 0x2000;

export const METHOD_STORED = 0;
export const METHOD_DEFLATE = 8;

/** torch aligns every record's data to this many bytes (kFieldAlignment). */
export const TORCH_ALIGNMENT = 64;

/** miniz switches a record to zip64 when a value reaches 0xFFFFFFFF (not 2^32). */
export function needsZip64(value: number): boolean {
  return value >= U32_MAX;
}

export interface LocalHeaderPlan {
  /** Local header bytes: fixed part, name, zip64 extra (if any), FB padding extra. */
  header: Buffer;
  /** Absolute offset of the first data byte (a multiple of 64). */
  dataOffset: number;
  /** The record carries a zip64 extra, so its data descriptor uses 8-byte sizes. */
  zip64: boolean;
  flags: number;
}

/**
 * Local header for a STORED record of `size` bytes whose header starts at `headerOffset`.
 * Mirrors torch's getPadding + miniz: zip64 extra = [usize, 0 (csize not known yet)] when the size
 * needs it, then [offset] when the header offset needs it; local CRC/sizes stay 0.
 */
export function buildLocalHeader(headerOffset: number, nameBytes: Uint8Array, size: number): LocalHeaderPlan {
  const bigSize = needsZip64(size);
  const bigOffset = needsZip64(headerOffset);
  const zip64Len = bigSize || bigOffset ? 4 + (bigSize ? 16 : 0) + (bigOffset ? 8 : 0) : 0;
  const beforePad = headerOffset + LOCAL_HEADER_SIZE + nameBytes.length + zip64Len + 4;
  const pad = (TORCH_ALIGNMENT - (beforePad % TORCH_ALIGNMENT)) % TORCH_ALIGNMENT;
  const extraLen = zip64Len + 4 + pad;
  const flags = size === 0 ? FLAG_UTF8 : FLAG_UTF8 | FLAG_DATA_DESCRIPTOR;

  const h = Buffer.alloc(LOCAL_HEADER_SIZE + nameBytes.length + extraLen);
  h.writeUInt32LE(SIG_LOCAL, 0);
  // version needed (4), method (8), time (10), date (12), crc (14), sizes (18, 22): all 0
  h.writeUInt16LE(flags, 6);
  h.writeUInt16LE(nameBytes.length, 26);
  h.writeUInt16LE(extraLen, 28);
  h.set(nameBytes, LOCAL_HEADER_SIZE);
  let p = LOCAL_HEADER_SIZE + nameBytes.length;
  if (zip64Len > 0) {
    h.writeUInt16LE(EXTRA_ZIP64, p);
    h.writeUInt16LE(zip64Len - 4, p + 2);
    p += 4;
    if (bigSize) {
      h.writeBigUInt64LE(BigInt(size), p);
      p += 16; // csize: 0, unknown when the header is written
    }
    if (bigOffset) {
      h.writeBigUInt64LE(BigInt(headerOffset), p);
      p += 8;
    }
  }
  h.writeUInt16LE(EXTRA_TORCH_PAD, p);
  h.writeUInt16LE(pad, p + 2);
  h.fill(0x5a, p + 4, p + 4 + pad); // 'Z'
  return { header: h, dataOffset: headerOffset + h.length, zip64: zip64Len > 0, flags };
}

/** `PK\7\8` + crc + csize + usize; 8-byte sizes when the local header had a zip64 extra. */
export function buildDataDescriptor(crc32: number, size: number, zip64: boolean): Buffer {
  const d = Buffer.alloc(zip64 ? 24 : 16);
  d.writeUInt32LE(SIG_DATA_DESCRIPTOR, 0);
  d.writeUInt32LE(crc32 >>> 0, 4);
  if (zip64) {
    d.writeBigUInt64LE(BigInt(size), 8);
    d.writeBigUInt64LE(BigInt(size), 16);
  } else {
    d.writeUInt32LE(size, 8);
    d.writeUInt32LE(size, 12);
  }
  return d;
}

/** Central directory entry; no extra field unless a value needs zip64 (then 0xFFFFFFFF markers). */
export function buildCentralEntry(
  nameBytes: Uint8Array,
  flags: number,
  crc32: number,
  size: number,
  headerOffset: number,
): Buffer {
  const bigSize = needsZip64(size);
  const bigOffset = needsZip64(headerOffset);
  const zip64Len = bigSize || bigOffset ? 4 + (bigSize ? 16 : 0) + (bigOffset ? 8 : 0) : 0;
  const e = Buffer.alloc(CENTRAL_HEADER_SIZE + nameBytes.length + zip64Len);
  e.writeUInt32LE(SIG_CENTRAL, 0);
  // made-by (4), needed (6), method (10), time (12), date (14): all 0
  e.writeUInt16LE(flags, 8);
  e.writeUInt32LE(crc32 >>> 0, 16);
  e.writeUInt32LE(Math.min(size, U32_MAX), 20);
  e.writeUInt32LE(Math.min(size, U32_MAX), 24);
  e.writeUInt16LE(nameBytes.length, 28);
  e.writeUInt16LE(zip64Len, 30);
  // comment length (32), disk (34), internal attrs (36), external attrs (38): all 0
  e.writeUInt32LE(Math.min(headerOffset, U32_MAX), 42);
  e.set(nameBytes, CENTRAL_HEADER_SIZE);
  let p = CENTRAL_HEADER_SIZE + nameBytes.length;
  if (zip64Len > 0) {
    e.writeUInt16LE(EXTRA_ZIP64, p);
    e.writeUInt16LE(zip64Len - 4, p + 2);
    p += 4;
    if (bigSize) {
      e.writeBigUInt64LE(BigInt(size), p); // usize
      e.writeBigUInt64LE(BigInt(size), p + 8); // csize
      p += 16;
    }
    if (bigOffset) e.writeBigUInt64LE(BigInt(headerOffset), p);
  }
  return e;
}

/** zip64 EOCD + zip64 locator + classic EOCD, written by torch even for tiny files. */
export function buildEndRecords(count: number, cdSize: number, cdOffset: number): Buffer {
  const b = Buffer.alloc(ZIP64_EOCD_SIZE + ZIP64_LOCATOR_SIZE + EOCD_SIZE);
  const z64Offset = cdOffset + cdSize;
  b.writeUInt32LE(SIG_ZIP64_EOCD, 0);
  b.writeBigUInt64LE(BigInt(ZIP64_EOCD_SIZE - 12), 4);
  b.writeUInt16LE(0x031e, 12); // made-by: unix, 3.0
  b.writeUInt16LE(45, 14); // needed: 4.5 (zip64)
  // this disk (16), CD disk (20): 0
  b.writeBigUInt64LE(BigInt(count), 24);
  b.writeBigUInt64LE(BigInt(count), 32);
  b.writeBigUInt64LE(BigInt(cdSize), 40);
  b.writeBigUInt64LE(BigInt(cdOffset), 48);

  let p = ZIP64_EOCD_SIZE;
  b.writeUInt32LE(SIG_ZIP64_LOCATOR, p);
  b.writeBigUInt64LE(BigInt(z64Offset), p + 8);
  b.writeUInt32LE(1, p + 16); // total disks

  p += ZIP64_LOCATOR_SIZE;
  b.writeUInt32LE(SIG_EOCD, p);
  b.writeUInt16LE(Math.min(count, U16_MAX), p + 8);
  b.writeUInt16LE(Math.min(count, U16_MAX), p + 10);
  b.writeUInt32LE(Math.min(cdSize, U32_MAX), p + 12);
  b.writeUInt32LE(Math.min(cdOffset, U32_MAX), p + 16);
  return b;
}
