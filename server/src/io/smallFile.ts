/**
 * Small files (most LoRA copies are kilobytes) read whole with synchronous calls: a scan reads
 * thousands of them, and the asynchronous path costs a thread-pool round trip per call.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { SMALL_FILE_BYTES } from './memoryHandle';

/**
 * A small file's bytes, read with synchronous calls: microseconds each, where the asynchronous path
 * costs a thread-pool round trip per call, which dominated scans of thousands of files. Undefined
 * for large or empty files and on any error (the asynchronous path then reports it).
 */
export function readSmallFile(path: string, expectedSize?: number): Buffer | undefined {
  let fd: number | undefined;
  try {
    let size = expectedSize;
    if (size === undefined) {
      const st = statSync(path);
      if (!st.isFile()) return undefined;
      size = st.size;
    }
    if (size <= 0 || size > SMALL_FILE_BYTES) return undefined;
    fd = openSync(path, 'r');
    // One byte more than expected: a read that fills it means the file grew since it was seen. A
    // regular file reads short only at its end, so one read says it all (no second read to see 0).
    let buf = Buffer.allocUnsafe(size + 1);
    let got = readSync(fd, buf, 0, buf.length, 0);
    if (got > size) {
      const st = fstatSync(fd);
      if (!st.isFile() || st.size > SMALL_FILE_BYTES) return undefined;
      const grown = Buffer.allocUnsafe(st.size);
      got = 0;
      for (let n = -1; n !== 0 && got < grown.length; got += n) n = readSync(fd, grown, got, grown.length - got, got);
      buf = grown;
    }
    return got > 0 ? buf.subarray(0, got) : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
