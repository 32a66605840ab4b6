/**
 * Fingerprints of large tensors: the multi-threaded path (leaves hashed on the main thread and a
 * worker, CRCs joined with crc32Combine) gives exactly the single-pass result, catches a flipped
 * byte, and crc32Combine agrees with zlib on every split.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as N from '../../server/src/formats/pickle/nodes';
import { PyNode } from '../../server/src/formats/pickle/nodes';
import { TreeBuilder } from '../../server/src/demo/loraTree';
import { writeTorchCheckpoint } from '../../server/src/formats/torch/ptWriter';
import { withCheckpoint } from '../../server/src/formats/checkpoint';
import { fingerprintCheckpoint } from '../../server/src/formats/fingerprint';
import { crc32Combine } from '../../server/src/formats/crc32Combine';
import { shutdownLeafPool, leafPoolStats } from '../../server/src/formats/leafHashPool';
import { availableParallelism } from 'node:os';
import { prng } from '../../server/src/demo/loraTree';

describe('fingerprint: large tensors on several threads', function () {
  this.timeout(60000);
  let dir: string;
  let file: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lora-fp-'));
    file = join(dir, 'big.pt');
    // 3 tensors: 13 MiB + 1 byte-ish (several leaves, a partial last leaf), 9 MiB, and a small one.
    const b = new TreeBuilder();
    const params: Array<[PyNode, PyNode]> = [
      [N.str('a'), b.tensor('float32', [3407873], randomBytes(3407873 * 4))],
      [N.str('b'), b.tensor('float16', [4718592], randomBytes(4718592 * 2))],
      [N.str('c'), b.tensor('float32', [10, 10], randomBytes(400))],
    ];
    const fh = await open(file, 'w');
    await writeTorchCheckpoint(fh, { prefix: 'big', root: N.dict([[N.str('lora_params'), N.dict(params)]]), storages: new Map([...b.storages].map(([k, data]) => [k, { kind: 'buffer' as const, data }])) });
    await fh.close();
  });
  after(async () => {
    await shutdownLeafPool();
    await rm(dir, { recursive: true, force: true });
  });

  it('gives the same digests as the single-pass path', async () => {
    const serial = await withCheckpoint(file, (c) => fingerprintCheckpoint(c, { parallelMinBytes: Infinity }));
    const before = leafPoolStats();
    const parallel = await withCheckpoint(file, (c) => fingerprintCheckpoint(c, { parallelMinBytes: 1 }));
    const after = leafPoolStats();
    if (availableParallelism() > 1) assert.ok(after.workerJobs > before.workerJobs, 'a worker hashed part of the file');
    assert.equal(after.fallbacks, before.fallbacks, 'no worker failed');
    assert.equal(serial.tensors.length, 3);
    assert.deepEqual(parallel, serial);
    assert.deepEqual(serial.crcFailures, []);
  });

  it('catches a flipped byte in any part of a large record', async () => {
    const size = (await stat(file)).size;
    for (const where of [200, Math.floor(size * 0.4), Math.floor(size * 0.7)]) {
      const copy = join(dir, `flip_${where}.pt`);
      const fh = await open(copy, 'w');
      const src = await open(file, 'r');
      const all = Buffer.alloc(size);
      await src.read(all, 0, size, 0);
      await src.close();
      const at = Math.max(where, 4096); // inside tensor data, past data.pkl
      all[at] ^= 0x40;
      await fh.write(all, 0, size, 0);
      await fh.close();
      const fp = await withCheckpoint(copy, (c) => fingerprintCheckpoint(c, { parallelMinBytes: 1 }));
      assert.equal(fp.crcFailures.length, 1, `flip at ${at}`);
    }
  });

  it('crc32Combine matches zlib for random splits, empty parts included', () => {
    const rand = prng(7);
    for (let i = 0; i < 200; i++) {
      const a = randomBytes(Math.floor(rand() * 5000));
      const b = randomBytes(i % 10 === 0 ? 0 : Math.floor(rand() * 70000));
      assert.equal(crc32Combine(crc32(a), crc32(b), b.length), crc32(Buffer.concat([a, b])));
    }
  });
});
