/**
 * Appends to an open file at explicit positions, gathering small pieces into one buffer: LoRA files
 * hold thousands of tiny tensors and records, and one write call per piece would dominate the time.
 * Used by the safetensors and zip writers.
 */
import type { FileHandle } from 'node:fs/promises';
import { readFull } from './readAhead';

export class PositionalWriter {
  /** Bytes already handed to the file. */
  position = 0;
  private readonly pending: Buffer;
  private pendingLen = 0;

  constructor(
    private readonly out: FileHandle,
    capacity: number,
  ) {
    this.pending = Buffer.allocUnsafe(capacity);
  }

  /** Offset the next byte will land at, counting what is still pending. */
  get offset(): number {
    return this.position + this.pendingLen;
  }

  /** The caller may reuse `data` as soon as this resolves. */
  async write(data: Uint8Array): Promise<void> {
    const capacity = this.pending.length;
    if (this.pendingLen + data.length <= capacity) {
      this.pending.set(data, this.pendingLen);
      this.pendingLen += data.length;
      return;
    }
    await this.flush();
    if (data.length < capacity) {
      this.pending.set(data, 0);
      this.pendingLen = data.length;
    } else {
      await this.writeFully(data);
    }
  }

  /**
   * Copies `length` bytes of another file from `offset`, read straight into the pending buffer.
   * `ended(missing)` makes the error thrown when that file ends `missing` bytes early.
   */
  async copyFrom(fh: FileHandle, offset: number, length: number, ended: (missing: number) => Error): Promise<void> {
    const capacity = this.pending.length;
    for (let done = 0; done < length; ) {
      if (this.pendingLen === capacity) await this.flush();
      const want = Math.min(capacity - this.pendingLen, length - done);
      const into = this.pending.subarray(this.pendingLen, this.pendingLen + want);
      await readFull(fh, into, offset + done, (at) => ended(length - (at - offset)));
      this.pendingLen += want;
      done += want;
    }
  }

  async flush(): Promise<void> {
    if (this.pendingLen === 0) return;
    const len = this.pendingLen;
    this.pendingLen = 0;
    await this.writeFully(this.pending.subarray(0, len));
  }

  private async writeFully(data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.out.write(data, done, data.length - done, this.position);
      done += bytesWritten;
      this.position += bytesWritten;
    }
  }
}
