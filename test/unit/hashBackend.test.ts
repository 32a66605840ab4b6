/**
 * The two hashing backends (native napi-rs, portable zlib + WebAssembly) give the same CRC32 and
 * XXH64 values bit for bit, match the published check values, and the bundled CLI finds the native
 * binaries beside itself (the .vsix layout) or falls back, with the same digests either way.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allBackends, type HashBackend } from '../../server/src/formats/hashBackend';

const ROOT = join(__dirname, '..', '..');

async function xxh64Hex(b: HashBackend, parts: Uint8Array[]): Promise<string> {
  const h = await b.xxh64();
  h.init();
  for (const p of parts) h.update(p);
  const out = Buffer.alloc(8);
  h.digestInto(out, 0);
  return out.toString('hex');
}

describe('hash backends', () => {
  const { native, portable } = allBackends();

  it('native binaries load on linux x64 (npm ci installs them)', function () {
    if (!(process.platform === 'linux' && process.arch === 'x64')) this.skip();
    assert.ok(native, 'the @node-rs prebuilt binaries did not load');
    assert.equal(native.name, 'native');
  });

  it('both match the published check values', async () => {
    for (const b of [native, portable]) {
      if (!b) continue;
      assert.equal(b.crc32(Buffer.from('123456789')).toString(16), 'cbf43926', b.name);
      assert.equal(await xxh64Hex(b, []), 'ef46db3751d8e999', b.name);
      assert.equal(await xxh64Hex(b, [Buffer.from('abc')]), '44bc2cf5ad770999', b.name);
    }
  });

  it('agree on random data of every awkward length, fed in one piece or in uneven pieces', async function () {
    if (!native) this.skip();
    for (const len of [0, 1, 3, 4, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 1000, 4096 + 17, (1 << 20) + 7]) {
      const data = randomBytes(len);
      assert.equal(native.crc32(data), portable.crc32(data), `crc32 of ${len} bytes`);
      const cut = Math.floor(len / 3);
      assert.equal(
        native.crc32(data.subarray(cut), native.crc32(data.subarray(0, cut))),
        portable.crc32(data),
        `chained crc32 of ${len}`,
      );
      const whole = await xxh64Hex(portable, [data]);
      assert.equal(await xxh64Hex(native, [data]), whole, `xxh64 of ${len} bytes`);
      assert.equal(
        await xxh64Hex(native, [data.subarray(0, cut), data.subarray(cut, cut + 5), data.subarray(cut + 5)]),
        whole,
        `streamed xxh64 of ${len}`,
      );
    }
  });

  it("native one-shot XXH64 (a tensor's single leaf) gives the streamed digest and leaves the stream alone", async function () {
    if (!native) this.skip();
    const h = await native.xxh64();
    assert.ok(h.oneShotInto, 'the native hasher hashes in one shot');
    for (const len of [0, 1, 31, 32, 4096 + 17, 4 * 1024 * 1024]) {
      const data = randomBytes(len);
      h.init();
      h.update(Buffer.from('ab'));
      const out = Buffer.alloc(16);
      h.oneShotInto(data, out, 8);
      assert.equal(out.subarray(8).toString('hex'), await xxh64Hex(portable, [data]), `one-shot of ${len} bytes`);
      h.update(Buffer.from('c'));
      h.digestInto(out, 0);
      assert.equal(out.subarray(0, 8).toString('hex'), '44bc2cf5ad770999', 'the stream went on undisturbed');
    }
  });

  it('a hasher reused after init() starts afresh', async () => {
    for (const b of [native, portable]) {
      if (!b) continue;
      const h = await b.xxh64();
      h.update(Buffer.from('left over'));
      h.init();
      h.update(Buffer.from('abc'));
      const out = Buffer.alloc(8);
      h.digestInto(out, 0);
      assert.equal(out.toString('hex'), '44bc2cf5ad770999', b.name);
    }
  });

  it('the bundled CLI loads the binaries from dist/native without node_modules, or goes portable, same digests', async function () {
    this.timeout(30_000);
    const dir = await mkdtemp(join(tmpdir(), 'lora-hash-'));
    try {
      await cp(join(ROOT, 'dist', 'cli.js'), join(dir, 'cli.js'));
      // The portable fallback is hash-wasm's XXH64 alone, not its every algorithm (scripts/build.mjs).
      assert.doesNotMatch(await readFile(join(dir, 'cli.js'), 'utf8'), /createBLAKE3|createArgon2/);
      await cp(join(ROOT, 'dist', 'native'), join(dir, 'native'), { recursive: true });
      const file = join(ROOT, 'test', 'fixtures', 'torch', 'views.pt');
      const run = (env: NodeJS.ProcessEnv = {}) =>
        JSON.parse(
          execFileSync(process.execPath, [join(dir, 'cli.js'), 'inspect', file, '--json'], {
            encoding: 'utf8',
            cwd: dir,
            env: { ...process.env, NODE_OPTIONS: '', ...env },
          }),
        );
      const withNative = run();
      if (process.platform === 'linux' && process.arch === 'x64') assert.equal(withNative.hash_backend, 'native');
      await rename(join(dir, 'native'), join(dir, 'elsewhere'));
      const without = run();
      assert.equal(without.hash_backend, 'portable');
      assert.ok(withNative.tensors.length >= 2);
      assert.deepEqual(
        without.tensors.map((t: { digest: string }) => t.digest),
        withNative.tensors.map((t: { digest: string }) => t.digest),
      );
      assert.equal(run({ LORA_SYNC_HASH_BACKEND: 'portable' }).hash_backend, 'portable');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
