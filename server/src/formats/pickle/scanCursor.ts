/**
 * The safety scan's reading of opcode operands: the position in the bytes, length-prefixed and
 * fixed-width operands, text lines and GLOBAL/INST name lines. An operand the scan cannot step past
 * throws a StuckError (the bytes after it are not scanned).
 */
import { describeOpcode } from './opcodes';

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** The first opcode the scan cannot step past: `truncated` when the bytes end inside it. */
export class StuckError {
  constructor(
    readonly at: number,
    readonly why: string,
    readonly truncated: boolean,
  ) {}
}

export abstract class ScanCursor {
  protected pos = 0;
  protected readonly nb: Buffer;

  constructor(protected readonly buf: Uint8Array) {
    this.nb = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  protected skip(n: number, at: number): void {
    if (n < 0) throw new StuckError(at, `${describeOpcode(this.buf[at])} declares a negative length`, false);
    if (n > this.buf.length - this.pos)
      throw new StuckError(at, `${describeOpcode(this.buf[at])} operand runs past the end`, true);
    this.pos += n;
  }

  protected need(n: number, at: number): void {
    if (n > this.buf.length - this.pos)
      throw new StuckError(at, `${describeOpcode(this.buf[at])} operand runs past the end`, true);
  }

  protected u8(at: number): number {
    this.need(1, at);
    return this.buf[this.pos++];
  }

  protected u32(at: number): number {
    this.need(4, at);
    const v = u32le(this.buf, this.pos);
    this.pos += 4;
    return v;
  }

  protected i32(at: number): number {
    this.need(4, at);
    const v = u32le(this.buf, this.pos) | 0;
    this.pos += 4;
    return v;
  }

  protected u64(at: number): number {
    this.need(8, at);
    const lo = u32le(this.buf, this.pos);
    const hi = u32le(this.buf, this.pos + 4);
    this.pos += 8;
    return hi * 0x1_0000_0000 + lo;
  }

  /** A text line, as [start, end) without its newline. */
  protected line(at: number): [number, number] {
    const s = this.pos;
    // A JS loop: names are short, and a native indexOf costs more to call than to run here.
    const b = this.buf;
    let nl = s;
    while (nl < b.length && b[nl] !== 0x0a) nl++;
    if (nl === b.length) nl = -1;
    if (nl < 0) throw new StuckError(at, `${describeOpcode(this.buf[at])} text operand has no newline`, true);
    this.pos = nl + 1;
    return [s, nl];
  }

  protected lineIndex(at: number): number {
    const [s, e] = this.line(at);
    const text = this.nb.toString('latin1', s, e);
    return /^\d{1,15}$/.test(text) ? Number(text) : -1;
  }

  /**
   * A GLOBAL/INST name line, decoded as CPython does (UTF-8; ASCII for INST). Undefined when Python
   * could not decode it or would refuse it before importing (empty, or holding a NUL).
   */
  protected nameLine(at: number, ascii: boolean): string | undefined {
    const [s, e] = this.line(at);
    if (e === s) return undefined;
    let text: string | undefined;
    let plain = true;
    for (let i = s; i < e; i++) if (this.buf[i] >= 0x80) plain = false;
    if (plain) text = this.nb.toString('latin1', s, e);
    else if (!ascii) {
      try {
        text = UTF8.decode(this.buf.subarray(s, e));
      } catch {
        text = undefined;
      }
    }
    return text?.includes('\0') ? undefined : text;
  }
}

/** A little-endian uint32 (the caller checked the bounds): plain byte arithmetic, no Buffer method. */
export function u32le(b: Uint8Array, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16)) + b[p + 3] * 0x1000000;
}
