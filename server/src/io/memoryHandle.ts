/**
 * A read-only stand-in for a FileHandle over bytes already in memory. Small checkpoints (most LoRA
 * copies are kilobytes) are read with one system call and then served from memory: the dozen
 * positional reads a zip needs would otherwise each be a round trip through libuv's thread pool,
 * which dominated the time per file (about 3 ms of waiting for a 10 kB file).
 * Only the methods the format readers use are provided.
 */
import type { FileHandle } from 'node:fs/promises';

export class MemoryHandle {
  constructor(private readonly data: Buffer) {}

  async read(
    buffer: Uint8Array,
    offset = 0,
    length = buffer.byteLength - offset,
    position: number | bigint | null = 0,
  ) {
    const pos = Number(position ?? 0);
    const n = Math.max(0, Math.min(length, this.data.length - pos));
    if (n > 0) buffer.set(this.data.subarray(pos, pos + n), offset);
    return { bytesRead: n, buffer };
  }

  async stat() {
    return { size: this.data.length, isFile: () => true };
  }

  async close(): Promise<void> {}

  /** Typed as a FileHandle for the readers, which only call read/stat/close. */
  asFileHandle(): FileHandle {
    return this as unknown as FileHandle;
  }
}

/** Files up to this size are read whole. */
export const SMALL_FILE_BYTES = 4 * 1024 * 1024;
