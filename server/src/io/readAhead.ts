/**
 * Consecutive chunks of a byte range of an open file, with the next chunk's read already in flight
 * (on libuv's pool) while the caller works on this one: hashing or writing a large record then costs
 * about the longer of reading and working, not their sum. Used by fingerprints and the zip writer.
 * readFull/readUpTo are the read loop every reader uses.
 */
import type { FileHandle } from 'node:fs/promises';

/** Reads into `buf` from `pos` until it is full or the file ends; returns the bytes read. The one read loop. */
export async function readUpTo(fh: FileHandle, buf: Buffer, pos: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, pos + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/** Fills `buf` from `pos`, or throws `ended(pos of the missing byte)` when the file ends first. */
export async function readFull(
  fh: FileHandle,
  buf: Buffer,
  pos: number,
  ended: (at: number) => Error,
): Promise<Buffer> {
  const got = await readUpTo(fh, buf, pos);
  if (got < buf.length) throw ended(pos + got);
  return buf;
}

/**
 * Yields [offset, offset + length) in chunks of up to `bufs[0].length` bytes, alternating the two
 * buffers: a chunk stays valid until the next one is asked for. `ended(at)` makes the error thrown
 * when the file ends before `at`, which is relative to `offset`.
 */
export async function* readAhead(
  fh: FileHandle,
  offset: number,
  length: number,
  bufs: [Buffer, Buffer],
  ended: (at: number) => Error,
): AsyncGenerator<Buffer> {
  const size = bufs[0].length;
  let which = 0;
  const start = (at: number): Promise<Buffer> | undefined => {
    if (at >= length) return undefined;
    const p = readFull(fh, bufs[which].subarray(0, Math.min(size, length - at)), offset + at, (pos) =>
      ended(pos - offset),
    );
    // A read that fails while the caller awaits something else must not count as unhandled (Node
    // would exit): marked handled here, it still throws where it is awaited.
    p.catch(() => undefined);
    which ^= 1;
    return p;
  };
  let at = 0;
  let pending = start(0);
  try {
    while (pending) {
      const chunk = await pending;
      at += chunk.length;
      pending = start(at);
      yield chunk;
    }
  } finally {
    // The caller stopped (or a read failed) with a read in flight: let it finish before the buffers go.
    if (pending) await pending.catch(() => undefined);
  }
}
