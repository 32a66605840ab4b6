/**
 * Random-access zip reader for torch checkpoints. Opening reads only the end records, the central
 * directory and each local header (zipDirectory.ts); record data is read on demand with positional reads, so a
 * multi-GB file never has to fit in memory. Every structural lie raises a FormatError.
 */
import * as fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { crc32 } from '../hashBackend';
import { FormatError, isFormatError } from '../errors';
import { METHOD_STORED } from './zipLayout';
import {
  bad,
  parseZipDirectory,
  readExact,
  readInto,
  readZipDirectory,
  truncated,
  unsupported,
  type ZipOpenOptions,
  type ZipRecord,
} from './zipDirectory';

export type { ZipOpenOptions, ZipRecord } from './zipDirectory';

const DEFAULT_MAX_READ = 512 * 1024 * 1024;
const DEFAULT_CHUNK = 1024 * 1024;
const VERIFY_CHUNK = 1024 * 1024;

export class ZipReader {
  readonly records: readonly ZipRecord[];
  private readonly byName: Map<string, ZipRecord>;

  private constructor(
    private readonly fh: FileHandle | undefined,
    readonly fileSize: number,
    records: ZipRecord[],
    private readonly ownsHandle: boolean,
    /** The whole file, when it was read into memory (small files): reads are views of it. */
    private readonly bytes?: Buffer,
  ) {
    this.records = records;
    this.byName = new Map();
    for (const r of records) this.byName.set(r.name, r);
  }

  /** Opens `path`; `close()` closes the file. */
  static async open(path: string, opts?: ZipOpenOptions): Promise<ZipReader> {
    const fh = await fs.open(path, 'r');
    try {
      const { size } = await fh.stat();
      return await ZipReader.parse(fh, size, opts ?? {}, true);
    } catch (e) {
      await fh.close();
      throw e;
    }
  }

  /** Reads through a caller-owned handle; `close()` leaves the handle open. Reads never go past `fileSize`. */
  static fromFileHandle(fh: FileHandle, fileSize: number, opts?: ZipOpenOptions): Promise<ZipReader> {
    return ZipReader.parse(fh, fileSize, opts ?? {}, false);
  }

  /**
   * Parses a whole file held in memory, synchronously (the same checks as the other constructors).
   * Records read from it are views of `bytes`, which must not change while the reader is in use.
   */
  static fromBytes(bytes: Buffer, opts?: ZipOpenOptions): ZipReader {
    const records = parseZipDirectory(bytes, opts ?? {});
    return new ZipReader(undefined, bytes.length, records, false, bytes);
  }

  get(name: string): ZipRecord | undefined {
    return this.byName.get(name);
  }

  async close(): Promise<void> {
    if (this.ownsHandle) await this.fh!.close();
  }

  /** `len` bytes at `pos`: a view when the file is in memory (do not write to it), else a fresh buffer. */
  private async bytesAt(pos: number, len: number, where?: string): Promise<Buffer> {
    if (this.bytes) {
      if (pos + len > this.bytes.length) throw truncated(`file ended at ${this.bytes.length} while reading`, where);
      return this.bytes.subarray(pos, pos + len);
    }
    return readExact(this.fh!, pos, len, where);
  }

  /**
   * `read` for a STORED record of a file held in memory, synchronously; undefined when the file is
   * not in memory or the record is compressed (use `read`). Same checks, same errors.
   */
  readInMemory(rec: ZipRecord, opts: { maxBytes?: number; checkCrc?: boolean } = {}): Buffer | undefined {
    if (!this.bytes || rec.method !== METHOD_STORED) return undefined;
    const maxBytes = opts.maxBytes ?? DEFAULT_MAX_READ;
    if (rec.size > maxBytes)
      throw unsupported(`record is ${rec.size} bytes, over the ${maxBytes}-byte limit for whole reads`, rec.name);
    if (rec.dataOffset + rec.size > this.bytes.length)
      throw truncated(`file ended at ${this.bytes.length} while reading`, rec.name);
    const out = this.bytes.subarray(rec.dataOffset, rec.dataOffset + rec.size);
    if (opts.checkCrc ?? true) {
      const actual = crc32(out);
      if (actual !== rec.crc32) throw crcError(rec, actual);
    }
    return out;
  }

  /** Whole record, decompressed if needed, CRC checked (CRC_MISMATCH). Refuses records over maxBytes (default 512 MiB) with ZIP_UNSUPPORTED. */
  async read(rec: ZipRecord, opts: { maxBytes?: number; checkCrc?: boolean } = {}): Promise<Buffer> {
    const maxBytes = opts.maxBytes ?? DEFAULT_MAX_READ;
    if (rec.size > maxBytes) {
      throw unsupported(`record is ${rec.size} bytes, over the ${maxBytes}-byte limit for whole reads`, rec.name);
    }
    let out: Buffer;
    if (rec.method === METHOD_STORED) {
      // In memory: a copy, since callers of read() own what they get.
      out = this.bytes
        ? Buffer.from(await this.bytesAt(rec.dataOffset, rec.size, rec.name))
        : await readExact(this.fh!, rec.dataOffset, rec.size, rec.name);
    } else {
      out = Buffer.allocUnsafe(rec.size);
      let n = 0;
      await this.inflate(rec, (chunk) => {
        out.set(chunk, n);
        n += chunk.length;
      });
    }
    if (opts.checkCrc ?? true) {
      const actual = crc32(out);
      if (actual !== rec.crc32) throw crcError(rec, actual);
    }
    return out;
  }

  /** Raw stored bytes [start, end) of a STORED record, in fresh chunks (default 1 MiB). */
  async *chunks(rec: ZipRecord, start = 0, end = rec.size, chunkSize = DEFAULT_CHUNK): AsyncIterable<Buffer> {
    if (rec.method !== METHOD_STORED) throw unsupported('chunks() reads STORED records only', rec.name);
    if (!(0 <= start && start <= end && end <= rec.size) || chunkSize < 1) {
      throw new RangeError(`chunks(${start}, ${end}, ${chunkSize}) outside record ${rec.name} of ${rec.size} bytes`);
    }
    yield* this.rawChunks(rec.dataOffset + start, end - start, chunkSize, rec.name);
  }

  /** Streams a record (inflating if needed) and compares its CRC32 with the central directory's. */
  async verifyCrc(rec: ZipRecord): Promise<{ ok: boolean; expected: number; actual: number }> {
    let crc = 0;
    if (rec.method === METHOD_STORED && this.bytes) {
      crc = crc32(await this.bytesAt(rec.dataOffset, rec.size, rec.name));
    } else if (rec.method === METHOD_STORED) {
      const fh = this.fh!;
      const buf = Buffer.allocUnsafe(Math.min(VERIFY_CHUNK, Math.max(1, rec.size)));
      let done = 0;
      while (done < rec.size) {
        const want = Math.min(buf.length, rec.size - done);
        await readInto(fh, buf.subarray(0, want), rec.dataOffset + done, rec.name);
        crc = crc32(buf.subarray(0, want), crc);
        done += want;
      }
    } else {
      await this.inflate(rec, (chunk) => {
        crc = crc32(chunk, crc);
      });
    }
    return { ok: crc === rec.crc32, expected: rec.crc32, actual: crc };
  }

  private async *rawChunks(pos: number, length: number, chunkSize: number, where: string): AsyncGenerator<Buffer> {
    let done = 0;
    while (done < length) {
      const want = Math.min(chunkSize, length - done);
      // In memory: fresh chunks too, as the contract of chunks() says.
      yield this.bytes
        ? Buffer.from(await this.bytesAt(pos + done, want, where))
        : await readExact(this.fh!, pos + done, want, where);
      done += want;
    }
  }

  /** Inflates a DEFLATE record in a stream; output must be exactly the declared size. */
  private async inflate(rec: ZipRecord, onChunk: (chunk: Buffer) => void): Promise<void> {
    let produced = 0;
    // pipeline() may report its own AbortError instead of what the sink threw, so keep ours.
    let sinkError: FormatError | undefined;
    try {
      await pipeline(
        Readable.from(this.rawChunks(rec.dataOffset, rec.compressedSize, DEFAULT_CHUNK, rec.name)),
        zlib.createInflateRaw(),
        async (source: AsyncIterable<Buffer>) => {
          for await (const chunk of source) {
            produced += chunk.length;
            if (produced > rec.size) {
              throw (sinkError = bad(`inflates past its declared size of ${rec.size} bytes`, rec.name));
            }
            onChunk(chunk);
          }
        },
      );
    } catch (e) {
      if (sinkError) throw sinkError;
      if (isFormatError(e)) throw e;
      const code = (e as { code?: unknown }).code;
      if (typeof code === 'string' && code.startsWith('Z_'))
        throw bad(`bad deflate data: ${(e as Error).message}`, rec.name);
      throw e;
    }
    if (produced !== rec.size) throw bad(`inflates to ${produced} bytes, declared ${rec.size}`, rec.name);
  }

  private static async parse(
    fh: FileHandle,
    fileSize: number,
    opts: ZipOpenOptions,
    owns: boolean,
  ): Promise<ZipReader> {
    return new ZipReader(fh, fileSize, await readZipDirectory(fh, fileSize, opts), owns);
  }
}

function crcError(rec: ZipRecord, actual: number): FormatError {
  return new FormatError(
    'CRC_MISMATCH',
    `CRC32 of ${rec.name} is ${actual.toString(16)}, central directory says ${rec.crc32.toString(16)}`,
    rec.name,
  );
}
