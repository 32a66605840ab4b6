/**
 * CRC-32 of A‖B from crc(A), crc(B) and len(B), so parts of one record can be checked on different
 * threads. The method is zlib's `crc32_combine` (apply len(B) zero bytes to crc(A) through
 * GF(2) matrix squaring), written from its description; Node exposes `zlib.crc32` but not this.
 */
const POLY = 0xedb88320;

function timesVec(mat: Uint32Array, vec: number): number {
  let sum = 0;
  for (let i = 0; vec !== 0; i++, vec >>>= 1) if (vec & 1) sum ^= mat[i];
  return sum >>> 0;
}

function square(out: Uint32Array, mat: Uint32Array): void {
  for (let n = 0; n < 32; n++) out[n] = timesVec(mat, mat[n]);
}

export function crc32Combine(crcA: number, crcB: number, lenB: number): number {
  if (lenB <= 0) return crcA >>> 0;
  const even = new Uint32Array(32);
  const odd = new Uint32Array(32);
  // Operator for one zero bit.
  odd[0] = POLY;
  for (let n = 1, row = 1; n < 32; n++, row <<= 1) odd[n] = row >>> 0;
  square(even, odd); // two zero bits
  square(odd, even); // four zero bits
  let crc = crcA >>> 0;
  let len = lenB;
  // Each round squares the operator (1, 2, 4 ... zero bytes) and applies it where len has a bit.
  do {
    square(even, odd);
    if (len % 2 === 1) crc = timesVec(even, crc);
    len = Math.floor(len / 2);
    if (len === 0) break;
    square(odd, even);
    if (len % 2 === 1) crc = timesVec(odd, crc);
    len = Math.floor(len / 2);
  } while (len !== 0);
  return (crc ^ crcB) >>> 0;
}
