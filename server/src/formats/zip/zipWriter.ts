/**
 * Streaming writer for torch 1.13's zip layout: every record STORED, data 64-byte aligned,
 * data descriptors, zip64 end records. Re-writing the records of a torch.save file in the same
 * order reproduces that file byte for byte.
 */
import type { FileHandle } from 'node:fs/promises';
import { crc32 } from '../hashBackend';
import { PositionalWriter } from '../../io/positionalWriter';
import { readAhead } from '../../io/readAhead';
import { FormatError } from '../errors';
import { U16_MAX, buildCentralEntry, buildDataDescriptor, buildEndRecords, buildLocalHeader } from './zipLayout';

export type ZipSource =
  | { kind: 'buffer'; data: Uint8Array }
  | { kind: 'range'; fh: FileHandle; offset: number; length: number; expectedCrc32?: number };

export interface ZipEntry {
  name: string;
  source: ZipSource;
}

const DEFAULT_CHUNK = 1024 * 1024;
/** Headers, descriptors and small records are coalesced into writes of up to this size. */
const COALESCE_LIMIT = 256 * 1024;

function sourceLength(src: ZipSource): number {
  return src.kind === 'buffer' ? src.data.length : src.length;
}

/**
 * Copies a record's bytes to the output, returning their CRC32. From a file, the next chunk is read
 * into the other buffer while this one is written (the two run on libuv's pool side by side).
 */
async function copySource(w: PositionalWriter, entry: ZipEntry, bufs: [Buffer, Buffer]): Promise<number> {
  const src = entry.source;
  if (src.kind === 'buffer') {
    await w.write(src.data);
    return crc32(src.data);
  }
  let crc = 0;
  const ended = (at: number) =>
    new FormatError('ZIP_TRUNCATED', `source of ${entry.name} ended ${src.length - at} bytes early`, entry.name);
  for await (const chunk of readAhead(src.fh, src.offset, src.length, bufs, ended)) {
    crc = crc32(chunk, crc);
    await w.write(chunk);
  }
  if (src.expectedCrc32 !== undefined && src.expectedCrc32 >>> 0 !== crc) {
    throw new FormatError(
      'CRC_MISMATCH',
      `bytes copied for ${entry.name} have CRC ${hex(crc)}, expected ${hex(src.expectedCrc32 >>> 0)}`,
      entry.name,
    );
  }
  return crc;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

function checkEntries(entries: ZipEntry[]): Uint8Array[] {
  const seen = new Set<string>();
  return entries.map((e) => {
    if (seen.has(e.name)) throw new FormatError('ZIP_DUPLICATE_NAME', `record ${e.name} given twice`, e.name);
    seen.add(e.name);
    const nameBytes = Buffer.from(e.name, 'utf8');
    if (nameBytes.length > U16_MAX)
      throw new FormatError('ZIP_UNSUPPORTED', 'record name longer than 65535 bytes', e.name);
    const len = sourceLength(e.source);
    if (!Number.isSafeInteger(len) || len < 0) throw new RangeError(`bad length for ${e.name}: ${len}`);
    return nameBytes;
  });
}

/**
 * Writes a torch-layout zip to `out` (an open FileHandle, file empty). Returns bytes written and
 * per-entry CRCs. A 'range' source with expectedCrc32 is checked against the bytes actually copied
 * (FormatError CRC_MISMATCH); on any error the output is left partial and the caller discards it.
 */
export async function writeTorchZip(
  out: FileHandle,
  entries: ZipEntry[],
  opts: { chunkSize?: number } = {},
): Promise<{ bytes: number; crcs: number[] }> {
  const names = checkEntries(entries);
  // Two copy buffers, no larger than the largest file-backed record (most LoRA tensors are kilobytes).
  let largest = 1;
  for (const e of entries) if (e.source.kind === 'range') largest = Math.max(largest, e.source.length);
  const size = Math.min(Math.max(1, opts.chunkSize ?? DEFAULT_CHUNK), largest);
  const copyBufs: [Buffer, Buffer] = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)];
  const w = new PositionalWriter(out, COALESCE_LIMIT);
  const central: Buffer[] = [];
  const crcs: number[] = [];

  for (let i = 0; i < entries.length; i++) {
    const size = sourceLength(entries[i].source);
    const headerOffset = w.offset;
    const plan = buildLocalHeader(headerOffset, names[i], size);
    await w.write(plan.header);
    const crc = size === 0 ? 0 : await copySource(w, entries[i], copyBufs);
    if (size > 0) await w.write(buildDataDescriptor(crc, size, plan.zip64));
    central.push(buildCentralEntry(names[i], plan.flags, crc, size, headerOffset));
    crcs.push(crc);
  }

  const cdOffset = w.offset;
  let cdSize = 0;
  for (const e of central) {
    await w.write(e);
    cdSize += e.length;
  }
  await w.write(buildEndRecords(entries.length, cdSize, cdOffset));
  await w.flush();
  return { bytes: w.position, crcs };
}
