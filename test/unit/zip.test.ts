import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { FormatError, type FormatErrorCode } from '../../server/src/formats/errors';
import {
  buildCentralEntry,
  buildDataDescriptor,
  buildEndRecords,
  buildLocalHeader,
} from '../../server/src/formats/zip/zipLayout';
import { ZipReader, type ZipRecord } from '../../server/src/formats/zip/zipReader';
import { writeTorchZip, type ZipEntry } from '../../server/src/formats/zip/zipWriter';
import { prng } from '../../server/src/demo/loraTree';
import { hasTorch, PY, pyScript } from '../support/python';

const HAS_TORCH = hasTorch();

interface PyRecord {
  name: string;
  size: number;
  csize: number;
  crc: number;
  offset: number;
  method: number;
  flags: number;
}
type FixtureKey = 'lora' | 'weird' | 'small' | 'bytesio' | 'deflated' | 'bomb';
type Manifest = Record<FixtureKey, { path: string; records: PyRecord[] }>;
const TORCH_FILES: FixtureKey[] = ['lora', 'weird', 'small', 'bytesio'];

function python(args: string[]): string {
  const r = spawnSync(PY, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  assert.equal(r.status, 0, `python ${args.join(' ')} failed:\n${r.stderr}`);
  return r.stdout;
}

async function expectFormatError(p: Promise<unknown>, codes: FormatErrorCode[]): Promise<FormatError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof FormatError, `expected FormatError, got ${String(e)}`);
    assert.ok(codes.includes(e.code), `expected ${codes.join('|')}, got ${e.code}: ${e.message}`);
    return e;
  }
  assert.fail(`expected FormatError ${codes.join('|')}, got success`);
}

/** Offsets of central-directory entries in a small torch zip (32-bit fields, no comment). */
function centralEntries(buf: Buffer): { at: number; name: string }[] {
  const eocd = buf.length - 22;
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const out: { at: number; name: string }[] = [];
  for (let i = 0; i < count; i++) {
    const n = buf.readUInt16LE(p + 28);
    out.push({ at: p, name: buf.subarray(p + 46, p + 46 + n).toString('utf8') });
    p += 46 + n + buf.readUInt16LE(p + 30) + buf.readUInt16LE(p + 32);
  }
  return out;
}

/** Opens a reader, reads and CRC-checks every record; the whole thing a consumer would do. */
async function openAndReadAll(file: string): Promise<void> {
  const z = await ZipReader.open(file);
  try {
    for (const rec of z.records) {
      await z.read(rec, { maxBytes: 1 << 20 });
      await z.verifyCrc(rec);
    }
  } finally {
    await z.close();
  }
}

(HAS_TORCH ? describe : describe.skip)('zip container (torch 1.13 files)', function () {
  this.timeout(120_000);
  let dir: string;
  let manifest: Manifest;
  const bytesOf = (k: FixtureKey) => fs.readFileSync(manifest[k].path);
  let scratchN = 0;
  const scratch = (data: Uint8Array): string => {
    const p = path.join(dir, `scratch-${scratchN++}.zip`);
    fs.writeFileSync(p, data);
    return p;
  };

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-zip-test-'));
    manifest = JSON.parse(python([pyScript('zip_fixtures.py'), dir])) as Manifest;
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe('reader', () => {
    it('reports the same records as Python zipfile', async () => {
      for (const key of Object.keys(manifest) as FixtureKey[]) {
        const z = await ZipReader.open(manifest[key].path);
        try {
          const got = z.records.map((r) => ({
            name: r.name,
            size: r.size,
            csize: r.compressedSize,
            crc: r.crc32,
            offset: r.localHeaderOffset,
            method: r.method,
            flags: r.flags,
          }));
          assert.deepEqual(got, manifest[key].records, key);
          assert.equal(z.fileSize, fs.statSync(manifest[key].path).size);
          for (const r of z.records) {
            assert.deepEqual(Buffer.from(r.nameBytes), Buffer.from(r.name, 'utf8'));
            assert.equal(z.get(r.name), r);
          }
          assert.equal(z.get('nope'), undefined);
        } finally {
          await z.close();
        }
      }
    });

    it('sees the torch layout: prefixes, order, 64-byte aligned data, version record', async () => {
      const prefixes: Record<string, string> = {
        lora: 'LoRA_🎯_x',
        weird: 'weird.name.v2',
        small: 'small',
        bytesio: 'archive',
      };
      for (const key of TORCH_FILES) {
        const z = await ZipReader.open(manifest[key].path);
        try {
          const names = z.records.map((r) => r.name);
          const pre = prefixes[key];
          assert.equal(names[0], `${pre}/data.pkl`);
          assert.equal(names[names.length - 1], `${pre}/version`);
          const keys = names.slice(1, -1).map((n) => n.slice(`${pre}/data/`.length));
          assert.deepEqual(keys, [...keys].sort(), 'storage keys in string order');
          for (const r of z.records) {
            assert.equal(r.dataOffset % 64, 0, `${r.name} data at ${r.dataOffset}`);
            assert.equal(r.flags, r.size === 0 ? 0x0800 : 0x0808);
          }
          assert.equal((await z.read(z.get(`${pre}/version`)!)).toString(), '3\n');
        } finally {
          await z.close();
        }
      }
    });

    it('reads stored bytes at dataOffset, inflates DEFLATE records, and verifies CRCs', async () => {
      const weird = await ZipReader.open(manifest.weird.path);
      const defl = await ZipReader.open(manifest.deflated.path);
      try {
        const raw = bytesOf('weird');
        for (const r of weird.records) {
          const data = await weird.read(r);
          assert.deepEqual(data, raw.subarray(r.dataOffset, r.dataOffset + r.size));
          assert.deepEqual(await weird.verifyCrc(r), { ok: true, expected: r.crc32, actual: r.crc32 });
          const d = defl.get(r.name)!;
          assert.deepEqual(await defl.read(d), data, `inflated ${r.name}`);
          assert.equal((await defl.verifyCrc(d)).ok, true);
        }
        assert.ok(
          defl.records.some((r) => r.method === 8 && r.compressedSize < r.size),
          'fixture really is deflated',
        );
        assert.deepEqual(
          defl.records.map((r) => r.name),
          weird.records.map((r) => r.name).reverse(),
        );
      } finally {
        await weird.close();
        await defl.close();
      }
    });

    it('chunks() yields exactly the requested range in bounded chunks', async () => {
      const z = await ZipReader.open(manifest.lora.path);
      try {
        const rec = z.records[0];
        const whole = await z.read(rec);
        const parts: Buffer[] = [];
        for await (const c of z.chunks(rec, 5, 1000, 7)) {
          assert.ok(c.length <= 7 && c.length > 0);
          parts.push(c);
        }
        assert.deepEqual(Buffer.concat(parts), whole.subarray(5, 1000));
        const all: Buffer[] = [];
        for await (const c of z.chunks(rec)) all.push(c);
        assert.deepEqual(Buffer.concat(all), whole);
        const empty = z.records.find((r) => r.size === 0)!;
        for await (const _ of z.chunks(empty)) assert.fail('0-byte record yields nothing');
        assert.deepEqual(await z.read(empty), Buffer.alloc(0));
      } finally {
        await z.close();
      }
    });

    it('fromFileHandle reads a caller-owned handle and leaves it open', async () => {
      const fh = await fsp.open(manifest.small.path, 'r');
      try {
        const z = await ZipReader.fromFileHandle(fh, (await fh.stat()).size);
        await z.close();
        assert.equal((await z.verifyCrc(z.records[1])).ok, true);
      } finally {
        await fh.close();
      }
    });
  });

  describe('writer', () => {
    for (const key of TORCH_FILES) {
      it(`rewrites ${key} byte-identically from range sources`, async () => {
        const src = await ZipReader.open(manifest[key].path);
        const srcFh = await fsp.open(manifest[key].path, 'r');
        const outPath = path.join(dir, `rt-${key}.pt`);
        const out = await fsp.open(outPath, 'w');
        try {
          const entries: ZipEntry[] = src.records.map((r) => ({
            name: r.name,
            source: { kind: 'range', fh: srcFh, offset: r.dataOffset, length: r.size, expectedCrc32: r.crc32 },
          }));
          // Tiny chunks for one fixture so the multi-chunk copy path is exercised too.
          const res = await writeTorchZip(out, entries, key === 'lora' ? { chunkSize: 7 } : undefined);
          assert.deepEqual(
            res.crcs,
            src.records.map((r) => r.crc32),
          );
          assert.equal(res.bytes, src.fileSize);
        } finally {
          await out.close();
          await srcFh.close();
          await src.close();
        }
        assert.ok(fs.readFileSync(outPath).equals(bytesOf(key)), 'byte-identical to torch.save');
      });
    }

    it('header builders reproduce every torch local header', async () => {
      for (const key of TORCH_FILES) {
        const raw = bytesOf(key);
        const z = await ZipReader.open(manifest[key].path);
        for (const r of z.records) {
          const plan = buildLocalHeader(r.localHeaderOffset, r.nameBytes, r.size);
          assert.deepEqual(plan.header, raw.subarray(r.localHeaderOffset, r.dataOffset), r.name);
          assert.equal(plan.dataOffset, r.dataOffset);
        }
        await z.close();
      }
    });

    it('writes a zip from buffer sources that real torch.load reads', async () => {
      const parts = path.join(dir, 'parts');
      fs.mkdirSync(parts);
      python([pyScript('pickle_parts.py'), 'make', parts]);
      const keys = fs.readdirSync(path.join(parts, 'data')).sort();
      const entries: ZipEntry[] = [
        { name: 'built/data.pkl', source: { kind: 'buffer', data: fs.readFileSync(path.join(parts, 'data.pkl')) } },
        ...keys.map(
          (k): ZipEntry => ({
            name: `built/data/${k}`,
            source: { kind: 'buffer', data: fs.readFileSync(path.join(parts, 'data', k)) },
          }),
        ),
        { name: 'built/version', source: { kind: 'buffer', data: Buffer.from('3\n') } },
      ];
      const outPath = path.join(dir, 'built.pt');
      const out = await fsp.open(outPath, 'w');
      await writeTorchZip(out, entries).finally(() => out.close());
      assert.equal(python([pyScript('pickle_parts.py'), 'check', outPath, path.join(parts, 'ref.pt')]).trim(), 'OK');
      const z = await ZipReader.open(outPath);
      for (const r of z.records) assert.equal((await z.verifyCrc(r)).ok, true);
      await z.close();
    });

    it('refuses a range source whose bytes do not match expectedCrc32, or that ends early', async () => {
      const srcFh = await fsp.open(manifest.small.path, 'r');
      const out = await fsp.open(path.join(dir, 'bad-crc.pt'), 'w');
      try {
        const e = await expectFormatError(
          writeTorchZip(out, [
            {
              name: 'x/data/0',
              source: { kind: 'range', fh: srcFh, offset: 0, length: 100, expectedCrc32: 0x12345678 },
            },
          ]),
          ['CRC_MISMATCH'],
        );
        assert.equal(e.where, 'x/data/0');
        const size = (await srcFh.stat()).size;
        await expectFormatError(
          writeTorchZip(out, [
            { name: 'x/data/0', source: { kind: 'range', fh: srcFh, offset: size - 10, length: 100 } },
          ]),
          ['ZIP_TRUNCATED'],
        );
        await expectFormatError(
          writeTorchZip(out, [
            { name: 'x/a', source: { kind: 'buffer', data: Buffer.from('a') } },
            { name: 'x/a', source: { kind: 'buffer', data: Buffer.from('b') } },
          ]),
          ['ZIP_DUPLICATE_NAME'],
        );
        // A source that ends early on a later chunk, read ahead while the previous chunk is being
        // written: a typed error where it is awaited, never an unhandled rejection (which ends the process).
        const big = path.join(dir, 'shrinking.bin');
        await fsp.writeFile(big, Buffer.alloc(2.5 * 1024 * 1024, 7)); // the last read (0.5 MiB) is short, the next finds the end
        const bigFh = await fsp.open(big, 'r');
        const unhandled: unknown[] = [];
        const onUnhandled = (r: unknown) => unhandled.push(r);
        process.on('unhandledRejection', onUnhandled);
        try {
          const out2 = await fsp.open(path.join(dir, 'shrunk.pt'), 'w');
          try {
            await expectFormatError(
              writeTorchZip(
                out2,
                [{ name: 'x/data/0', source: { kind: 'range', fh: bigFh, offset: 0, length: 8 * 1024 * 1024 } }],
                { chunkSize: 1024 * 1024 },
              ),
              ['ZIP_TRUNCATED'],
            );
          } finally {
            await out2.close();
          }
          await new Promise((r) => setTimeout(r, 50));
          assert.deepEqual(unhandled, []);
        } finally {
          process.off('unhandledRejection', onUnhandled);
          await bigFh.close();
        }
      } finally {
        await out.close();
        await srcFh.close();
      }
    });
  });

  describe('hostile input', () => {
    it('every truncation of a small torch file is a FormatError', async () => {
      const raw = bytesOf('small');
      for (let len = 0; len < raw.length; len++) {
        await expectFormatError(
          openAndReadAll(scratch(raw.subarray(0, len))),
          len === 0 ? ['EMPTY_FILE'] : ['ZIP_TRUNCATED', 'ZIP_BAD_STRUCTURE'],
        );
      }
    });

    it('detects a flipped byte in tensor data', async () => {
      const raw = Buffer.from(bytesOf('weird'));
      const z0 = await ZipReader.open(manifest.weird.path);
      const rec = z0.records[1];
      await z0.close();
      raw[rec.dataOffset + 3] ^= 0x10;
      const z = await ZipReader.open(scratch(raw));
      try {
        const r = z.get(rec.name)!;
        const v = await z.verifyCrc(r);
        assert.equal(v.ok, false);
        assert.equal(v.expected, rec.crc32);
        assert.equal(v.actual, zlib.crc32(raw.subarray(rec.dataOffset, rec.dataOffset + rec.size)));
        const e = await expectFormatError(z.read(r), ['CRC_MISMATCH']);
        assert.equal(e.where, rec.name);
        assert.equal((await z.read(r, { checkCrc: false })).length, rec.size);
      } finally {
        await z.close();
      }
    });

    it('random byte flips give a FormatError or success, never another error, each fast', async () => {
      const raw = bytesOf('weird');
      const cdStart = centralEntries(raw)[0].at;
      const rnd = prng(0x5eed);
      const file = path.join(dir, 'fuzz.pt');
      let failures = 0;
      let slowest = 0;
      for (let i = 0; i < 3000; i++) {
        const b = Buffer.from(raw);
        const flips = 1 + Math.floor(rnd() * 3);
        for (let f = 0; f < flips; f++) {
          // Half the flips hit the central directory and end records, where parsing decisions live.
          const lo = rnd() < 0.5 ? cdStart : 0;
          const pos = lo + Math.floor(rnd() * (raw.length - lo));
          b[pos] ^= 1 + Math.floor(rnd() * 255);
        }
        fs.writeFileSync(file, b);
        const t0 = performance.now();
        try {
          await openAndReadAll(file);
        } catch (e) {
          assert.ok(e instanceof FormatError, `case ${i}: ${String(e)}`);
          failures++;
        }
        slowest = Math.max(slowest, performance.now() - t0);
      }
      assert.ok(failures > 1000, `only ${failures} cases failed: flips are not reaching the parser`);
      assert.ok(slowest < 500, `slowest case took ${slowest} ms`);
    });

    describe('crafted', () => {
      let raw: Buffer;
      let cd: { at: number; name: string }[];
      let recs: readonly ZipRecord[];
      before(async () => {
        raw = bytesOf('weird');
        cd = centralEntries(raw);
        const z = await ZipReader.open(manifest.weird.path);
        recs = z.records;
        await z.close();
      });
      /** A copy of the fixture changed in place by `fn`, written to a scratch file. */
      const mutate = (fn: (b: Buffer) => unknown): string => {
        const b = Buffer.from(raw);
        fn(b);
        return scratch(b);
      };
      const eocd = () => raw.length - 22;
      const z64eocd = () => raw.length - 22 - 20 - 56;

      it('empty file, tiny file, garbage', async () => {
        await expectFormatError(ZipReader.open(scratch(Buffer.alloc(0))), ['EMPTY_FILE']);
        await expectFormatError(ZipReader.open(scratch(Buffer.from('PK\x03\x04abc'))), ['ZIP_TRUNCATED']);
        const g = Buffer.alloc(5000);
        const rnd = prng(7);
        for (let i = 0; i < g.length; i++) g[i] = Math.floor(rnd() * 256);
        await expectFormatError(ZipReader.open(scratch(g)), ['ZIP_TRUNCATED', 'ZIP_BAD_STRUCTURE']);
      });

      it('central directory pointing past EOF', async () => {
        const p = mutate((b) => {
          b.writeBigUInt64LE(BigInt(raw.length + 100), z64eocd() + 48);
          b.writeUInt32LE(raw.length + 100, eocd() + 16);
        });
        await expectFormatError(ZipReader.open(p), ['ZIP_TRUNCATED']);
        const p2 = mutate((b) => b.writeBigUInt64LE(0xffff_ffff_ffffn, z64eocd() + 40));
        await expectFormatError(ZipReader.open(p2), ['ZIP_BAD_STRUCTURE', 'ZIP_TRUNCATED', 'ZIP_UNSUPPORTED']);
      });

      it('classic and zip64 end records that disagree', async () => {
        await expectFormatError(
          ZipReader.open(mutate((b) => b.writeUInt16LE(3, eocd() + 10) && b.writeUInt16LE(3, eocd() + 8))),
          ['ZIP_BAD_STRUCTURE'],
        );
      });

      it('record size larger than the file, refused before allocating', async () => {
        const p = mutate((b) => {
          b.writeUInt32LE(0xfffffff0, cd[1].at + 20);
          b.writeUInt32LE(0xfffffff0, cd[1].at + 24);
        });
        await expectFormatError(ZipReader.open(p), ['ZIP_TRUNCATED']);
      });

      it('overlapping records', async () => {
        // Grow data.pkl so it swallows the next record's local header.
        const grown = recs[1].localHeaderOffset + 10 - recs[0].dataOffset;
        const p = mutate((b) => {
          b.writeUInt32LE(grown, cd[0].at + 20);
          b.writeUInt32LE(grown, cd[0].at + 24);
        });
        await expectFormatError(ZipReader.open(p), ['ZIP_OVERLAP']);
      });

      it('two central entries for the same local header', async () => {
        const p = mutate((b) => b.writeUInt32LE(recs[1].localHeaderOffset, cd[2].at + 42));
        await expectFormatError(ZipReader.open(p), ['ZIP_BAD_STRUCTURE', 'ZIP_OVERLAP']);
      });

      it('duplicate names', async () => {
        assert.equal(cd[1].name.length, cd[2].name.length);
        const p = mutate((b) => b.write(cd[1].name, cd[2].at + 46, 'utf8'));
        await expectFormatError(ZipReader.open(p), ['ZIP_DUPLICATE_NAME']);
      });

      it('encrypted flag, unknown method, multi-disk', async () => {
        await expectFormatError(ZipReader.open(mutate((b) => b.writeUInt16LE(0x0809, cd[1].at + 8))), [
          'ZIP_UNSUPPORTED',
        ]);
        await expectFormatError(ZipReader.open(mutate((b) => b.writeUInt16LE(12, cd[1].at + 10))), ['ZIP_UNSUPPORTED']);
        await expectFormatError(ZipReader.open(mutate((b) => b.writeUInt16LE(1, eocd() + 4))), ['ZIP_UNSUPPORTED']);
        await expectFormatError(ZipReader.open(mutate((b) => b.writeUInt32LE(2, z64eocd() + 16))), ['ZIP_UNSUPPORTED']);
      });

      it('comment-length lies', async () => {
        await expectFormatError(ZipReader.open(mutate((b) => b.writeUInt16LE(10, eocd() + 20))), [
          'ZIP_BAD_STRUCTURE',
          'ZIP_TRUNCATED',
        ]);
        const withComment = Buffer.concat([raw, Buffer.from('hello comment')]);
        withComment.writeUInt16LE(5, eocd() + 20);
        await expectFormatError(ZipReader.open(scratch(withComment)), ['ZIP_BAD_STRUCTURE', 'ZIP_TRUNCATED']);
        // An honest comment is fine.
        withComment.writeUInt16LE(13, eocd() + 20);
        const z = await ZipReader.open(scratch(withComment));
        assert.equal(z.records.length, recs.length);
        await z.close();
      });

      it('stored record with csize ≠ usize, bad local signature, local name ≠ central name', async () => {
        await expectFormatError(ZipReader.open(mutate((b) => b.writeUInt32LE(recs[1].size - 1, cd[1].at + 20))), [
          'ZIP_BAD_STRUCTURE',
        ]);
        await expectFormatError(ZipReader.open(mutate((b) => b.writeUInt32LE(0x04034b51, recs[1].localHeaderOffset))), [
          'ZIP_BAD_STRUCTURE',
        ]);
        await expectFormatError(
          ZipReader.open(
            mutate((b) => {
              b[recs[1].localHeaderOffset + 30] ^= 1;
            }),
          ),
          ['ZIP_BAD_STRUCTURE'],
        );
      });

      it('open limits: maxRecords, maxCentralDirBytes; read limit: maxBytes', async () => {
        await expectFormatError(ZipReader.open(manifest.weird.path, { maxRecords: 3 }), ['ZIP_UNSUPPORTED']);
        await expectFormatError(ZipReader.open(manifest.weird.path, { maxCentralDirBytes: 100 }), ['ZIP_UNSUPPORTED']);
        const z = await ZipReader.open(manifest.weird.path);
        await expectFormatError(z.read(z.records[0], { maxBytes: 10 }), ['ZIP_UNSUPPORTED']);
        await z.close();
      });

      it('deflate: bomb capped by maxBytes, size lies and corrupt streams are FormatErrors', async () => {
        const bomb = await ZipReader.open(manifest.bomb.path);
        const rec = bomb.records[0];
        assert.equal(rec.size, 64 << 20);
        await expectFormatError(bomb.read(rec, { maxBytes: 1 << 20 }), ['ZIP_UNSUPPORTED']);
        assert.equal((await bomb.read(rec)).length, 64 << 20);
        await bomb.close();

        const braw = bytesOf('bomb');
        const bcd = centralEntries(braw);
        // Declared smaller than what the stream inflates to: stops at the declared size.
        const small = Buffer.from(braw);
        small.writeUInt32LE(1000, bcd[0].at + 24);
        const zs = await ZipReader.open(scratch(small));
        await expectFormatError(zs.read(zs.records[0]), ['ZIP_BAD_STRUCTURE']);
        await expectFormatError(zs.verifyCrc(zs.records[0]), ['ZIP_BAD_STRUCTURE']);
        await zs.close();
        // Declared far beyond any possible deflate ratio.
        const huge = Buffer.from(braw);
        huge.writeUInt32LE(0xfffffff0, bcd[0].at + 24);
        await expectFormatError(ZipReader.open(scratch(huge)), ['ZIP_BAD_STRUCTURE']);

        const draw = bytesOf('deflated');
        const dz = await ZipReader.open(manifest.deflated.path);
        const target = dz.records.find((r) => r.compressedSize > 100)!;
        await dz.close();
        const corrupt = Buffer.from(draw);
        for (let i = 0; i < 8; i++) corrupt[target.dataOffset + 20 + i] ^= 0xa5;
        const zc = await ZipReader.open(scratch(corrupt));
        await expectFormatError(zc.read(zc.get(target.name)!), ['ZIP_BAD_STRUCTURE', 'CRC_MISMATCH']);
        await zc.close();
      });
    });
  });
});

describe('zip64 layout (≥ 4 GiB rules, pure)', () => {
  const name = Buffer.from('big/data/0');
  const G4 = 2 ** 32;

  it('no zip64 below 0xFFFFFFFF, FB header even with pad 0', () => {
    const plan = buildLocalHeader(0, name, 0xfffffffe);
    assert.equal(plan.zip64, false);
    assert.equal(plan.header.readUInt16LE(30 + name.length), 0x4246);
    assert.equal(plan.dataOffset % 64, 0);
    // 30 + 10 + 4 = 44 → pad 20; header offset 20 → 64 exactly → pad 0 but the FB header stays.
    const p0 = buildLocalHeader(20, name, 5);
    assert.equal(p0.header.length, 44);
    assert.equal(p0.header.readUInt16LE(42), 0);
    assert.equal(p0.dataOffset, 64);
    assert.equal(buildDataDescriptor(1, 5, false).length, 16);
  });

  it('size ≥ 0xFFFFFFFF: local zip64 extra [usize, 0] before FB, local sizes 0, 24-byte descriptor', () => {
    const size = G4 + 64;
    const plan = buildLocalHeader(0, name, size);
    const h = plan.header;
    assert.equal(plan.zip64, true);
    assert.equal(h.readUInt32LE(18), 0);
    assert.equal(h.readUInt32LE(22), 0);
    const x = 30 + name.length;
    assert.equal(h.readUInt16LE(x), 1);
    assert.equal(h.readUInt16LE(x + 2), 16);
    assert.equal(h.readBigUInt64LE(x + 4), BigInt(size));
    assert.equal(h.readBigUInt64LE(x + 12), 0n);
    assert.equal(h.readUInt16LE(x + 20), 0x4246);
    assert.equal(plan.dataOffset % 64, 0);
    assert.equal(buildLocalHeader(0, name, 0xffffffff).zip64, true, 'threshold is 0xFFFFFFFF, as in miniz');
    const d = buildDataDescriptor(0xdeadbeef, size, true);
    assert.equal(d.length, 24);
    assert.equal(d.readBigUInt64LE(8), BigInt(size));
    assert.equal(d.readBigUInt64LE(16), BigInt(size));
    const c = buildCentralEntry(name, 0x0808, 0xdeadbeef, size, 0);
    assert.equal(c.readUInt32LE(20), 0xffffffff);
    assert.equal(c.readUInt32LE(24), 0xffffffff);
    assert.equal(c.readUInt32LE(42), 0);
    assert.equal(c.readUInt16LE(30), 20);
    assert.deepEqual(
      [c.readBigUInt64LE(46 + name.length + 4), c.readBigUInt64LE(46 + name.length + 12)],
      [BigInt(size), BigInt(size)],
    );
  });

  it('header offset ≥ 0xFFFFFFFF: local zip64 extra [offset]; both: [usize, 0, offset]', () => {
    const off = G4 + 200;
    const p = buildLocalHeader(off, name, 5);
    const x = 30 + name.length;
    assert.equal(p.zip64, true);
    assert.equal(p.header.readUInt16LE(x + 2), 8);
    assert.equal(p.header.readBigUInt64LE(x + 4), BigInt(off));
    assert.equal(p.dataOffset % 64, 0);
    const c = buildCentralEntry(name, 0x0808, 1, 5, off);
    assert.equal(c.readUInt32LE(20), 5);
    assert.equal(c.readUInt32LE(42), 0xffffffff);
    assert.equal(c.readUInt16LE(30), 12);
    assert.equal(c.readBigUInt64LE(46 + name.length + 4), BigInt(off));
    const both = buildLocalHeader(off, name, G4);
    assert.equal(both.header.readUInt16LE(x + 2), 24);
    assert.deepEqual(
      [both.header.readBigUInt64LE(x + 4), both.header.readBigUInt64LE(x + 12), both.header.readBigUInt64LE(x + 20)],
      [BigInt(G4), 0n, BigInt(off)],
    );
    assert.equal(both.dataOffset % 64, 0);
  });

  it('end records: EOCD saturates, zip64 EOCD holds the real values', () => {
    const e = buildEndRecords(70000, 1234, G4 + 5);
    assert.equal(e.readBigUInt64LE(32), 70000n);
    assert.equal(e.readBigUInt64LE(48), BigInt(G4 + 5));
    assert.equal(e.readBigUInt64LE(56 + 8), BigInt(G4 + 5 + 1234));
    assert.equal(e.readUInt16LE(76 + 10), 0xffff);
    assert.equal(e.readUInt32LE(76 + 12), 1234);
    assert.equal(e.readUInt32LE(76 + 16), 0xffffffff);
  });

  it('the reader follows zip64 fields in a sparse > 4 GiB archive (Python zipfile agrees)', async function () {
    this.timeout(60_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-zip64-'));
    const file = path.join(dir, 'sparse.pt');
    const fh = await fsp.open(file, 'w');
    try {
      // Record 0: 4 GiB + 10 of zeros left as a hole; record 1: 5 bytes after the 4 GiB mark.
      const sizes = [G4 + 10, 5];
      const names = ['big/data/0', 'big/data/1'].map((n) => Buffer.from(n));
      const tail = Buffer.from('tail!');
      const crcs = [0x1234, zlib.crc32(tail)];
      let pos = 0;
      const central: Buffer[] = [];
      for (let i = 0; i < 2; i++) {
        const plan = buildLocalHeader(pos, names[i], sizes[i]);
        await fh.write(plan.header, 0, plan.header.length, pos);
        if (i === 1) await fh.write(tail, 0, 5, plan.dataOffset);
        const d = buildDataDescriptor(crcs[i], sizes[i], plan.zip64);
        await fh.write(d, 0, d.length, plan.dataOffset + sizes[i]);
        central.push(buildCentralEntry(names[i], plan.flags, crcs[i], sizes[i], pos));
        pos = plan.dataOffset + sizes[i] + d.length;
      }
      const cd = Buffer.concat(central);
      const endRecs = buildEndRecords(2, cd.length, pos);
      await fh.write(Buffer.concat([cd, endRecs]), 0, cd.length + endRecs.length, pos);
    } finally {
      await fh.close();
    }
    try {
      const z = await ZipReader.open(file);
      assert.deepEqual(
        z.records.map((r) => [r.name, r.size, r.compressedSize]),
        [
          ['big/data/0', G4 + 10, G4 + 10],
          ['big/data/1', 5, 5],
        ],
      );
      assert.ok(z.records[1].localHeaderOffset > G4);
      for (const r of z.records) assert.equal(r.dataOffset % 64, 0);
      assert.equal((await z.read(z.records[1])).toString(), 'tail!');
      await expectFormatError(z.read(z.records[0]), ['ZIP_UNSUPPORTED']);
      await z.close();
      if (HAS_TORCH) {
        const py = JSON.parse(
          python([
            '-c',
            'import json,sys,zipfile; z=zipfile.ZipFile(sys.argv[1]); print(json.dumps([[i.filename,i.file_size,i.header_offset] for i in z.infolist()]))',
            file,
          ]),
        ) as [string, number, number][];
        assert.deepEqual(
          py,
          z.records.map((r) => [r.name, r.size, r.localHeaderOffset]),
        );
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
