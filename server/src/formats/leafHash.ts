/**
 * The part of fingerprinting that can run on any thread: read a byte range of a file, return its
 * CRC-32 and the XXH3-128 digest of each 4 MiB leaf. Used by the main thread and by the worker
 * (`leafHashWorker.ts`) alike, so both compute exactly the same thing.
 */
import { createXXHash128, IHasher } from 'hash-wasm';
import { crc32 } from 'node:zlib';
import { readSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

export const LEAF = 4 * 1024 * 1024;

/**
 * `fd` is the descriptor the main thread already holds: worker threads share the process's
 * descriptors, so every thread reads the very file that was opened, even if the path has
 * since been renamed over by a trainer.
 */
export interface RangeJob { fd: number; start: number; end: number }
export interface RangeResult { crc: number; length: number; leaves: Uint8Array }

let hasher: IHasher | undefined;
async function leafHasher(): Promise<IHasher> {
  return (hasher ??= await createXXHash128());
}

/** Synchronous reads: for a worker thread, where blocking is the point. */
export async function hashRangeSync(job: RangeJob): Promise<RangeResult> {
  const h = await leafHasher();
  const buf = Buffer.allocUnsafe(LEAF);
  return digestLeaves(h, job, (pos, len) => {
    let got = 0;
    while (got < len) {
      const n = readSync(job.fd, buf, got, len - got, pos + got);
      if (n === 0) throw new Error(`file shrank while reading (offset ${pos + got})`);
      got += n;
    }
    return buf.subarray(0, len);
  });
}

/** Asynchronous reads: for the main thread, which must not block. */
export async function hashRange(fh: FileHandle, job: RangeJob): Promise<RangeResult> {
  const h = await leafHasher();
  {
    const buf = Buffer.allocUnsafe(LEAF);
    const leaves: Uint8Array[] = [];
    let crc = 0;
    for (let pos = job.start; pos < job.end; pos += LEAF) {
      const len = Math.min(LEAF, job.end - pos);
      let got = 0;
      while (got < len) {
        const { bytesRead } = await fh.read(buf, got, len - got, pos + got);
        if (bytesRead === 0) throw new Error(`file shrank while reading (offset ${pos + got})`);
        got += bytesRead;
      }
      const b = buf.subarray(0, len);
      crc = crc32(b, crc);
      h.init();
      h.update(b);
      leaves.push(h.digest('binary'));
    }
    return { crc, length: job.end - job.start, leaves: Buffer.concat(leaves) };
  }
}

function digestLeaves(h: IHasher, job: RangeJob, read: (pos: number, len: number) => Buffer): RangeResult {
  const leaves: Uint8Array[] = [];
  let crc = 0;
  for (let pos = job.start; pos < job.end; pos += LEAF) {
    const b = read(pos, Math.min(LEAF, job.end - pos));
    crc = crc32(b, crc);
    h.init();
    h.update(b);
    leaves.push(h.digest('binary'));
  }
  return { crc, length: job.end - job.start, leaves: Buffer.concat(leaves) };
}
