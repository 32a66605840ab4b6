/**
 * Mutation fuzzing of the format readers: the seeded mutations and the four targets, shared by the
 * worker that runs them (fuzzWorker.ts) and by anyone reproducing one case: case `i` of a target
 * is `mutate(seeds, caseRng(seed, i))`, so (target, seed, i) is all a failure report needs.
 */
import { unlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { writeTorchZip } from '../../server/src/formats/zip/zipWriter';
import { FormatError } from '../../server/src/formats/errors';
import { ZipReader } from '../../server/src/formats/zip/zipReader';
import { decodePickle } from '../../server/src/formats/pickle/decoder';
import { readSafetensors } from '../../server/src/formats/safetensors';
import { safetyFindings, scanFindings } from '../../server/src/formats/safety';
import { scanPickles } from '../../server/src/formats/pickle/safetyScan';
import { LEGACY_HEAD } from '../../server/src/formats/torch/legacy';
import { findTensors } from '../../server/src/formats/torch/torchPickle';
import { typedForm } from '../../server/src/formats/pyValue';
import { MemoryHandle } from '../../server/src/io/memoryHandle';
import { readEntry } from '../../server/src/engine/loraFile';
import { DEFAULT_CONFIG } from '../../server/src/engine/config';
import { prng } from '../../server/src/demo/loraTree';

export type Target = 'zip' | 'pickle' | 'safetensors' | 'checkpoint' | 'planted';
export interface Seed {
  name: string;
  bytes: Uint8Array;
  /** A data.pkl seed: the torch zip it came from (planted cases are written back into it). */
  zip?: Uint8Array;
}

/** mulberry32 (the demo generator's PRNG), one stream per case. */
export function caseRng(seed: number, i: number): () => number {
  return prng(seed ^ Math.imul(i + 1, 0x9e3779b1));
}

const INTERESTING_8 = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe];
const INTERESTING_32 = [
  0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff,
];

/** Offsets of the length, offset and count fields a zip reader trusts (central, local and end records). */
function zipFields(b: Buffer): Array<[number, 2 | 4 | 8]> {
  const out: Array<[number, 2 | 4 | 8]> = [];
  for (let p = 0; p + 4 <= b.length; p++) {
    const sig = b.readUInt32LE(p);
    if (sig === 0x02014b50 && p + 46 <= b.length)
      for (const [o, w] of [
        [10, 2],
        [20, 4],
        [24, 4],
        [28, 2],
        [30, 2],
        [32, 2],
        [42, 4],
      ] as const)
        out.push([p + o, w]);
    else if (sig === 0x04034b50 && p + 30 <= b.length)
      for (const [o, w] of [
        [8, 2],
        [18, 4],
        [22, 4],
        [26, 2],
        [28, 2],
      ] as const)
        out.push([p + o, w]);
    else if (sig === 0x06054b50 && p + 22 <= b.length)
      for (const [o, w] of [
        [4, 2],
        [8, 2],
        [10, 2],
        [12, 4],
        [16, 4],
        [20, 2],
      ] as const)
        out.push([p + o, w]);
    else if (sig === 0x06064b50 && p + 56 <= b.length)
      for (const [o, w] of [
        [16, 4],
        [24, 8],
        [32, 8],
        [40, 8],
        [48, 8],
      ] as const)
        out.push([p + o, w]);
    else if (sig === 0x07064b50 && p + 20 <= b.length) out.push([p + 8, 8]);
  }
  return out;
}

/** Offsets just after pickle opcodes that carry a length, an index or a count. */
function pickleFields(b: Buffer): Array<[number, 1 | 4 | 8]> {
  const width: Record<number, 1 | 4 | 8> = {
    0x58: 4,
    0x42: 4,
    0x54: 4,
    0x8d: 8,
    0x8e: 8,
    0x96: 8,
    0x95: 8,
    0x8b: 4,
    0x72: 4,
    0x6a: 4, // BINUNICODE BINBYTES BINSTRING *8 FRAME LONG4 LONG_BINPUT LONG_BINGET
    0x8c: 1,
    0x43: 1,
    0x55: 1,
    0x8a: 1,
    0x71: 1,
    0x68: 1,
    0x4b: 1, // SHORT_* LONG1 BINPUT BINGET BININT1
  };
  const out: Array<[number, 1 | 4 | 8]> = [];
  for (let p = 0; p < b.length - 1; p++)
    if (width[b[p]] && p + 1 + width[b[p]] <= b.length) out.push([p + 1, width[b[p]]]);
  return out;
}

function writeInt(b: Buffer, at: number, width: number, v: bigint): void {
  if (width === 1) b[at] = Number(v & 0xffn);
  else if (width === 2) b.writeUInt16LE(Number(v & 0xffffn), at);
  else if (width === 4) b.writeUInt32LE(Number(v & 0xffffffffn), at);
  else b.writeBigUInt64LE(v & 0xffffffffffffffffn, at);
}

/** A number inside a safetensors header (an offset, a shape, the length) replaced by another, the length prefix kept consistent or not. */
function safetensorsNumberLie(b: Buffer, rand: () => number): { bytes: Buffer; op: string } | undefined {
  if (b.length < 8) return undefined;
  const hlen = Number(b.readBigUInt64LE(0));
  if (hlen > b.length - 8) return undefined;
  const text = b.subarray(8, 8 + hlen).toString('latin1');
  const runs = [...text.matchAll(/\d+/g)];
  if (!runs.length) return undefined;
  const m = runs[Math.floor(rand() * runs.length)];
  const v = [
    '0',
    '-1',
    '1',
    '4294967296',
    '18446744073709551615',
    '99999999999999999999999',
    '1e308',
    '0.5',
    String(b.length),
    String(Number(m[0]) + 1),
  ][Math.floor(rand() * 10)];
  const head = Buffer.from(text.slice(0, m.index) + v + text.slice(m.index! + m[0].length), 'latin1');
  const out = Buffer.concat([b.subarray(0, 8), head, b.subarray(8 + hlen)]);
  if (rand() < 0.8) out.writeBigUInt64LE(BigInt(head.length), 0);
  return { bytes: out, op: `num@${m.index}=${v}` };
}

/** Applies one to three seeded mutations to a seed; returns the bytes and what was done. */
export function mutate(
  target: Target,
  seeds: Seed[],
  rand: () => number,
): { bytes: Buffer; seed: string; ops: string[] } {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
  const s = pick(seeds);
  let b: Buffer = Buffer.from(s.bytes);
  const ops: string[] = [];
  const n = 1 + Math.floor(rand() * rand() * 3.5);
  for (let k = 0; k < n; k++) {
    const pos = () => Math.floor(rand() * Math.max(1, b.length));
    const op = Math.floor(rand() * 9);
    switch (op) {
      case 0: {
        // bit flips
        const flips = 1 + Math.floor(rand() * 8);
        for (let f = 0; f < flips && b.length; f++) b[pos()] ^= 1 << Math.floor(rand() * 8);
        ops.push(`flip${flips}`);
        break;
      }
      case 1: {
        // interesting bytes
        const at = pos();
        if (b.length) b[at] = pick(INTERESTING_8);
        ops.push(`set@${at}`);
        break;
      }
      case 2: {
        // a run of random bytes
        const at = pos();
        const len = 1 + Math.floor(rand() * 16);
        for (let i = at; i < Math.min(b.length, at + len); i++) b[i] = Math.floor(rand() * 256);
        ops.push(`rand@${at}+${len}`);
        break;
      }
      case 3: {
        // truncation
        const len = Math.floor(rand() * b.length);
        b = b.subarray(0, len);
        ops.push(`cut@${len}`);
        break;
      }
      case 4: {
        // extension: random bytes or a copy of a slice
        const extra =
          rand() < 0.5
            ? Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 64) }, () => Math.floor(rand() * 256)))
            : b.subarray(pos(), pos() + 64);
        b = Buffer.concat([b, extra]);
        ops.push(`grow+${extra.length}`);
        break;
      }
      case 5: {
        // splice: a chunk of this or another seed inserted
        const other = Buffer.from(pick(seeds).bytes);
        const from = Math.floor(rand() * other.length);
        const chunk = other.subarray(from, from + 1 + Math.floor(rand() * 256));
        const at = pos();
        b = Buffer.concat([b.subarray(0, at), chunk, b.subarray(at)]);
        ops.push(`splice@${at}+${chunk.length}`);
        break;
      }
      case 6: {
        // deletion
        const at = pos();
        const len = 1 + Math.floor(rand() * 64);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + len)]);
        ops.push(`del@${at}+${len}`);
        break;
      }
      default: {
        // length-field lies at the fields the reader trusts
        if (target === 'safetensors' && rand() < 0.6) {
          const r = safetensorsNumberLie(b, rand);
          if (r) {
            b = r.bytes;
            ops.push(r.op);
          }
          break;
        }
        const all: Array<[number, number]> =
          target === 'pickle' ? pickleFields(b) : target === 'safetensors' ? [[0, 8]] : zipFields(b);
        const fields = all.filter(([at, width]) => at + width <= b.length);
        if (!fields.length) break;
        const [at, width] = pick(fields);
        const size = BigInt(b.length);
        const current =
          width === 1
            ? BigInt(b[at])
            : width === 2
              ? BigInt(b.readUInt16LE(at))
              : width === 4
                ? BigInt(b.readUInt32LE(at))
                : b.readBigUInt64LE(at);
        const v = pick([
          ...INTERESTING_32.map(BigInt),
          size,
          size - 1n,
          size + 1n,
          current + 1n,
          current - 1n,
          current * 2n,
          BigInt(Math.floor(rand() * 0xffffffff)),
          2n ** 53n,
          2n ** 63n,
          2n ** 64n - 1n,
        ]);
        writeInt(b, at, width, v < 0n ? 0n : v);
        ops.push(`lie@${at}:${width}=${v}`);
        break;
      }
    }
  }
  return { bytes: b, seed: s.name, ops };
}

/** The global every planted case names; the scan must report it however the bytes after it break. */
export const PLANTED = 'posix.system';

const sstr = (t: string) => Buffer.concat([Buffer.from([0x8c, t.length]), Buffer.from(t, 'latin1')]);
/** Ways to name posix.system, each leaving the stack as it found it (a POP after). */
const PLANTS: Array<[string, Buffer]> = [
  ['GLOBAL', Buffer.from('cposix\nsystem\n0', 'latin1')],
  ['STACK_GLOBAL', Buffer.concat([sstr('posix'), sstr('system'), Buffer.from([0x93, 0x30])])],
  [
    'STACK_GLOBAL via the memo',
    Buffer.concat([
      sstr('posix'),
      Buffer.from('r\x00\x00\x01\x000', 'latin1'), // LONG_BINPUT 65536, POP
      sstr('system'),
      Buffer.from('p65537\n0', 'latin1'), // PUT 65537, POP
      Buffer.from('j\x00\x00\x01\x00g65537\n\x93' + '0', 'latin1'), // LONG_BINGET, GET, STACK_GLOBAL, POP
    ]),
  ],
  ['INST', Buffer.from("(S'true'\niposix\nsystem\n0", 'latin1')],
  ['REDUCE', Buffer.from("cposix\nsystem\nS'true'\n\x85R0", 'latin1')],
];

/** Offsets just after each of the first `n` STOPs of a legacy file (its pickles, walked by the scan). */
function legacyCuts(b: Buffer, n: number): number[] {
  return scanPickles(b, { maxPickles: n }).pickles.map((p) => p.end);
}

/**
 * A planted case: a seed with an unsafe global planted near its start (a pickle seed: right after
 * PROTO; a legacy checkpoint: at the head of its object pickle, the fourth), then the bytes after the
 * plant mutated as `mutate` does. Returns the bytes and where the plant ends.
 */
export function plant(
  seeds: Seed[],
  rand: () => number,
): { bytes: Buffer; seed: string; ops: string[]; zip?: Uint8Array } {
  const s = seeds[Math.floor(rand() * seeds.length)];
  const b = Buffer.from(s.bytes);
  const [how, ops] = PLANTS[Math.floor(rand() * PLANTS.length)];
  let head: Buffer;
  let rest: Buffer;
  if (b.subarray(0, LEGACY_HEAD.length).equals(LEGACY_HEAD)) {
    const at = legacyCuts(b, 3)[2];
    head = Buffer.concat([b.subarray(0, at + 2), ops]); // after the object pickle's PROTO 2
    rest = b.subarray(at + 2);
  } else {
    const p = b[0] === 0x80 ? 2 : 0;
    head = Buffer.concat([b.subarray(0, p), ops]);
    rest = b.subarray(p);
  }
  const m = mutate('pickle', [{ name: s.name, bytes: rest }], rand);
  return { bytes: Buffer.concat([head, m.bytes]), seed: s.name, ops: [`plant ${how}`, ...m.ops], zip: s.zip };
}

/**
 * Runs one input through a target. Resolves when it was read (the checkpoint target: with what the
 * engine made of it, e.g. `corrupt CRC_MISMATCH`); rejects with whatever the reader threw.
 */
export async function runTarget(
  target: Target,
  bytes: Buffer,
  scratchFile: string,
  zip?: Uint8Array,
): Promise<string | undefined> {
  switch (target) {
    case 'zip': {
      const z = await ZipReader.fromFileHandle(new MemoryHandle(bytes).asFileHandle(), bytes.length);
      for (const r of z.records) {
        await z.read(r, { maxBytes: 1 << 24 });
        await z.verifyCrc(r);
      }
      return undefined;
    }
    case 'pickle': {
      // The safety scan (it never throws), then what consumers do with a decoded tree: list globals,
      // judge them, find tensors, render values.
      scanFindings(scanPickles(bytes));
      const d = decodePickle(bytes);
      safetyFindings(d.globals);
      findTensors(d.root);
      typedForm(d.root);
      return undefined;
    }
    case 'safetensors': {
      await readSafetensors(new MemoryHandle(bytes).asFileHandle(), bytes.length);
      return undefined;
    }
    case 'planted': {
      // The scan itself, then the engine's whole read of the bytes as a file: both must name the plant.
      const found = scanFindings(scanPickles(bytes)).map((f) => f.global);
      if (!found.includes(PLANTED)) throw new Error(`the scan lost the planted ${PLANTED}: ${found.join(', ')}`);
      if (zip) await writeZipWith(scratchFile, zip, bytes);
      else writeFileSync(scratchFile, bytes);
      try {
        const e = await readEntry(scratchFile, 'Team/🎯_WIN_EXPERTS/LoRA_X_abcdef.pt', DEFAULT_CONFIG);
        if (!e.unsafeGlobals.includes(PLANTED))
          throw new Error(`the engine lost the planted ${PLANTED}: ${e.kind} ${e.error?.code ?? ''}`);
        return `unsafe${e.error ? ` ${e.error.code}` : ''}`;
      } finally {
        try {
          unlinkSync(scratchFile);
        } catch {
          /* gone */
        }
      }
    }
    case 'checkpoint': {
      // The engine's own read of a file (open, fingerprint with CRCs, metadata, identity): never throws on content.
      writeFileSync(scratchFile, bytes);
      try {
        const e = await readEntry(scratchFile, 'Team/🎯_WIN_EXPERTS/LoRA_X_abcdef.pt', DEFAULT_CONFIG);
        return `${e.kind}${e.error ? ` ${e.error.code}` : ''}${e.unsafeGlobals.length ? ' unsafe' : ''}`;
      } finally {
        try {
          unlinkSync(scratchFile);
        } catch {
          /* gone */
        }
      }
    }
  }
}

/** The torch zip `zip` with its data.pkl replaced by `pkl`, written to `path` (the project's own zip writer). */
async function writeZipWith(path: string, zip: Uint8Array, pkl: Buffer): Promise<void> {
  const z = ZipReader.fromBytes(Buffer.from(zip));
  const entries = z.records.map((r) => ({
    name: r.name,
    source: {
      kind: 'buffer' as const,
      data: r.name.endsWith('/data.pkl') ? pkl : (z.readInMemory(r, { checkCrc: false }) ?? Buffer.alloc(0)),
    },
  }));
  const fh = await open(path, 'w');
  try {
    await writeTorchZip(fh, entries);
  } finally {
    await fh.close();
  }
}

/** Only typed errors are acceptable from a reader. */
export function acceptable(e: unknown): e is FormatError {
  return e instanceof FormatError;
}
