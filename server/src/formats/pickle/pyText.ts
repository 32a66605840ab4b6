/**
 * Python's text codecs as the pickle decoder needs them, on byte ranges [s, e) of the input:
 * UTF-8 with 'surrogatepass', int(text, 0), float(text), 'raw-unicode-escape' (UNICODE),
 * codecs.escape_decode (py2 STRING) and the little-endian two's complement of LONG1/LONG4.
 * A malformed operand throws PyTextError; the decoder turns it into PICKLE_BAD_OPCODE at its offset.
 */

/** A text operand that Python would refuse; the message names what is wrong. */
export class PyTextError extends Error {}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** UTF-8 with Python's 'surrogatepass': an encoded lone surrogate (ED A0..BF xx) is accepted. Undefined if invalid. */
export function decodeUtf8(buf: Buffer, s: number, e: number): string | undefined {
  if (e - s <= 256) {
    // Short ASCII (most keys and names): latin-1 slicing is cheaper than TextDecoder.
    let i = s;
    while (i < e && buf[i] < 0x80) i++;
    if (i === e) return buf.toString('latin1', s, e);
  }
  try {
    return UTF8.decode(buf.subarray(s, e));
  } catch {
    return decodeUtf8SurrogatePass(buf, s, e);
  }
}

/** Text INT/LONG operand, read like Python's int(text, 0) for the forms picklers write. */
export function parseTextInt(buf: Buffer, s: number, e: number): bigint {
  const text = buf.toString('latin1', s, e).trim().replace(/_/g, '');
  const m = /^([+-]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|\d+)$/.exec(text);
  if (!m) throw new PyTextError(`bad integer text ${JSON.stringify(text.slice(0, 40))}`);
  const magnitude = BigInt(m[2].length > 1 && m[2][0] === '0' && /[xXoObB]/.test(m[2][1]) ? m[2].toLowerCase() : m[2]);
  return m[1] === '-' ? -magnitude : magnitude;
}

/** Text FLOAT operand, read like Python's float(text). */
export function parseTextFloat(buf: Buffer, s: number, e: number): number {
  const text = buf.toString('latin1', s, e).trim().toLowerCase().replace(/_/g, '');
  const special = /^([+-]?)(inf|infinity|nan)$/.exec(text);
  if (special) {
    if (special[2] === 'nan') return NaN;
    return special[1] === '-' ? -Infinity : Infinity;
  }
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(text)) {
    throw new PyTextError(`bad float text ${JSON.stringify(text.slice(0, 40))}`);
  }
  return Number(text);
}

/** LONG1/LONG4 operand of n bytes at s: little-endian two's complement. */
export function decodeLong(buf: Uint8Array, s: number, n: number): bigint {
  if (n === 0) return 0n;
  let value: bigint;
  if (n <= 6) {
    let v = 0;
    for (let i = n - 1; i >= 0; i--) v = v * 256 + buf[s + i];
    value = BigInt(v);
  } else {
    let hex = '';
    for (let i = n - 1; i >= 0; i--) hex += HEX[buf[s + i]];
    value = BigInt(`0x${hex}`);
  }
  return buf[s + n - 1] & 0x80 ? value - (1n << BigInt(8 * n)) : value;
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Python's 'raw-unicode-escape' decoding (UNICODE): bytes are latin-1, \uXXXX and \UXXXXXXXX are escapes. */
export function rawUnicodeEscape(buf: Buffer, s: number, e: number): string {
  const parts: string[] = [];
  let i = s;
  let runStart = s;
  while (i < e) {
    if (buf[i] !== 0x5c) {
      i++;
      continue;
    }
    // A run of backslashes: an escape only if the run is odd and followed by u/U.
    let j = i;
    while (j < e && buf[j] === 0x5c) j++;
    if ((j - i) % 2 === 0 || j >= e || (buf[j] !== 0x75 && buf[j] !== 0x55)) {
      i = j;
      continue;
    }
    parts.push(buf.toString('latin1', runStart, j - 1));
    const digits = buf[j] === 0x75 ? 4 : 8;
    if (j + 1 + digits > e) throw new PyTextError('truncated \\u escape in UNICODE');
    const hex = buf.toString('latin1', j + 1, j + 1 + digits);
    if (!/^[0-9a-fA-F]+$/.test(hex)) throw new PyTextError('bad \\u escape in UNICODE');
    const cp = parseInt(hex, 16);
    if (cp > 0x10ffff) throw new PyTextError('\\U escape out of range in UNICODE');
    parts.push(String.fromCodePoint(cp));
    i = runStart = j + 1 + digits;
  }
  parts.push(buf.toString('latin1', runStart, e));
  return parts.join('');
}

/** Python's codecs.escape_decode (STRING operand), result read as latin-1. */
export function escapeDecode(buf: Buffer, s: number, e: number): string {
  let out = '';
  let i = s;
  while (i < e) {
    const b = buf[i++];
    if (b !== 0x5c) {
      out += String.fromCharCode(b);
      continue;
    }
    if (i >= e) throw new PyTextError('trailing \\ in STRING');
    const c = buf[i++];
    switch (c) {
      case 0x0a:
        break; // backslash-newline: line continuation
      case 0x5c:
        out += '\\';
        break;
      case 0x27:
        out += "'";
        break;
      case 0x22:
        out += '"';
        break;
      case 0x61:
        out += '\x07';
        break; // \a
      case 0x62:
        out += '\b';
        break;
      case 0x66:
        out += '\f';
        break;
      case 0x6e:
        out += '\n';
        break;
      case 0x72:
        out += '\r';
        break;
      case 0x74:
        out += '\t';
        break;
      case 0x76:
        out += '\v';
        break;
      case 0x78: {
        // \xhh
        const hex = buf.toString('latin1', i, Math.min(i + 2, e));
        if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw new PyTextError('bad \\x escape in STRING');
        out += String.fromCharCode(parseInt(hex, 16));
        i += 2;
        break;
      }
      default:
        if (c >= 0x30 && c <= 0x37) {
          // up to three octal digits, wrapped to a byte
          let v = c - 0x30;
          for (let k = 0; k < 2 && i < e && buf[i] >= 0x30 && buf[i] <= 0x37; k++) v = v * 8 + (buf[i++] - 0x30);
          out += String.fromCharCode(v & 0xff);
        } else {
          out += `\\${String.fromCharCode(c)}`; // unknown escapes are kept verbatim
        }
    }
  }
  return out;
}

/**
 * Strict UTF-8 plus encoded surrogates (what Python writes for a str holding a lone surrogate).
 * Returns undefined for anything else that is invalid. Note: a surrogate *pair* written as two
 * 3-byte sequences becomes one JS astral character, so it re-encodes as 4 bytes (not round-trip exact).
 */
function decodeUtf8SurrogatePass(buf: Uint8Array, s: number, e: number): string | undefined {
  const units: number[] = [];
  const parts: string[] = [];
  let i = s;
  while (i < e) {
    const b0 = buf[i];
    let cp: number;
    if (b0 < 0x80) {
      cp = b0;
      i += 1;
    } else if (b0 >= 0xc2 && b0 <= 0xdf) {
      if (i + 1 >= e || !isCont(buf[i + 1])) return undefined;
      cp = ((b0 & 0x1f) << 6) | (buf[i + 1] & 0x3f);
      i += 2;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      if (i + 2 >= e || !isCont(buf[i + 1]) || !isCont(buf[i + 2])) return undefined;
      if (b0 === 0xe0 && buf[i + 1] < 0xa0) return undefined; // overlong
      cp = ((b0 & 0x0f) << 12) | ((buf[i + 1] & 0x3f) << 6) | (buf[i + 2] & 0x3f);
      i += 3;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      if (i + 3 >= e || !isCont(buf[i + 1]) || !isCont(buf[i + 2]) || !isCont(buf[i + 3])) return undefined;
      if (b0 === 0xf0 && buf[i + 1] < 0x90) return undefined; // overlong
      if (b0 === 0xf4 && buf[i + 1] > 0x8f) return undefined; // > U+10FFFF
      cp = ((b0 & 0x07) << 18) | ((buf[i + 1] & 0x3f) << 12) | ((buf[i + 2] & 0x3f) << 6) | (buf[i + 3] & 0x3f);
      i += 4;
    } else {
      return undefined;
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      units.push(0xd800 | (cp >> 10), 0xdc00 | (cp & 0x3ff));
    } else {
      units.push(cp);
    }
    if (units.length >= 8192) parts.push(String.fromCharCode(...units.splice(0)));
  }
  parts.push(String.fromCharCode(...units));
  return parts.join('');
}

function isCont(b: number): boolean {
  return (b & 0xc0) === 0x80;
}
