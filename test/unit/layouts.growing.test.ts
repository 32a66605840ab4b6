import assert from 'node:assert/strict';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isPartialDownloadName, type StatSample, settling } from '../../server/src/layouts/growing';

const sample = (size: number, mtimeMs: number, at: number, ino = 7): StatSample => ({ size, mtimeMs, ino, at });

describe('layouts: files still growing', () => {
  it('partial-download names', () => {
    for (const n of ['a.safetensors.incomplete', 'a.safetensors.part', 'a.safetensors.crdownload', 'A.PART'])
      assert.ok(isPartialDownloadName(n), n);
    for (const n of ['a.safetensors', 'party.pt', 'a.part.safetensors']) assert.ok(!isPartialDownloadName(n), n);
  });

  it('two stats: changed size, mtime or inode is growing; still long enough is settled', () => {
    assert.deepEqual(settling('a.pt', sample(10, 1, 0), sample(20, 2, 50), 1000), {
      state: 'growing',
      why: 'size went from 10 to 20 bytes',
    });
    assert.equal(settling('a.pt', sample(10, 1, 0), sample(10, 2, 50), 1000).state, 'growing');
    assert.equal(settling('a.pt', sample(10, 1, 0), sample(10, 1, 50, 8), 1000).state, 'growing');
    assert.deepEqual(settling('a.pt', sample(10, 1, 0), sample(10, 1, 400), 1000), {
      state: 'waiting',
      remainingMs: 600,
    });
    assert.deepEqual(settling('a.pt', sample(10, 1, 0), sample(10, 1, 1000), 1000), { state: 'settled' });
    assert.equal(settling('a.pt.part', sample(10, 1, 0), sample(10, 1, 5000), 1000).state, 'growing');
    assert.equal(settling('a.pt', sample(10, 1, 0), sample(10, 1, 5000), 1000, ['a.pt.aria2']).state, 'growing');
  });

  it('on a real file being appended to', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lora-growing-'));
    const p = join(dir, 'x.safetensors');
    const fh = await open(p, 'w');
    try {
      const take = async (): Promise<StatSample> => {
        const s = await stat(p);
        return { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, at: Date.now() };
      };
      await fh.write(Buffer.alloc(100));
      const a = await take();
      await fh.write(Buffer.alloc(100));
      const b = await take();
      assert.equal(settling('x.safetensors', a, b, 0).state, 'growing');
      const c = await take();
      assert.equal(settling('x.safetensors', b, c, 0).state, 'settled');
    } finally {
      await fh.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
