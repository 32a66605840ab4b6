/**
 * The pickle encoder's output, CPython-exact at the byte level: a growable little-endian writer (with
 * the 'surrogatepass' UTF-8 CPython uses for str) and pickle.encode_long. encoder.ts walks the tree.
 */
import { FormatError } from '../errors';

/** Python's pickle.encode_long: minimal little-endian two's complement. */
export function encodeLong(v: bigint): Uint8Array {
  if (v === 0n) return new Uint8Array(0);
  const magnitude = v < 0n ? -v : v;
  const nbytes = (magnitude.toString(2).length >> 3) + 1;
  let twos = v < 0n ? (1n << BigInt(8 * nbytes)) + v : v;
  const out = new Uint8Array(nbytes);
  for (let i = 0; i < nbytes; i++) {
    out[i] = Number(twos & 0xffn);
    twos >>= 8n;
  }
  if (v < 0n && nbytes > 1 && out[nbytes - 1] === 0xff && (out[nbytes - 2] & 0x80) !== 0)
    return out.subarray(0, nbytes - 1);
  return out;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Growable output buffer. */
export class ByteWriter {
  private buf = Buffer.allocUnsafe(4096);
  private view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  private len = 0;

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.len++] = b;
  }
  u16le(v: number): void {
    this.ensure(2);
    this.view.setUint16(this.len, v, true);
    this.len += 2;
  }
  i32le(v: number): void {
    this.ensure(4);
    this.view.setInt32(this.len, v, true);
    this.len += 4;
  }
  u32le(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.len, v, true);
    this.len += 4;
  }
  f64be(v: number): void {
    this.ensure(8);
    this.view.setFloat64(this.len, v, false);
    this.len += 8;
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }

  /** UTF-8 text, lone surrogates written as 3-byte sequences (Python's 'surrogatepass'). */
  utf8(s: string): void {
    if (LONE_SURROGATE.test(s)) {
      this.bytes(utf8SurrogatePass(s));
      return;
    }
    const n = Buffer.byteLength(s, 'utf8');
    this.ensure(n);
    this.len += this.buf.write(s, this.len, n, 'utf8');
  }

  /** BINUNICODE operand: u32 byte length, then the UTF-8 bytes. */
  utf8WithLength(s: string): void {
    if (LONE_SURROGATE.test(s)) {
      const b = utf8SurrogatePass(s);
      this.u32le(b.length);
      this.bytes(b);
      return;
    }
    const n = Buffer.byteLength(s, 'utf8');
    if (n > 0xffff_ffff) throw new FormatError('PICKLE_LIMIT', 'pickle: str too long for BINUNICODE');
    this.u32le(n);
    this.ensure(n);
    this.len += this.buf.write(s, this.len, n, 'utf8');
  }

  result(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}

function utf8SurrogatePass(s: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    let cp = s.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < s.length) {
      const lo = s.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      }
    }
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return Uint8Array.from(out);
}
