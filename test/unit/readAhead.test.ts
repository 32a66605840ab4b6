import { strict as assert } from 'node:assert';
import { randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { readAhead } from '../../server/src/io/readAhead';
import { MemoryHandle } from '../../server/src/io/memoryHandle';

const MiB = 1024 * 1024;
const bufs = (size = MiB): [Buffer, Buffer] => [Buffer.alloc(size), Buffer.alloc(size)];
const ended = (at: number) => Object.assign(new Error(`ended at ${at}`), { at });

/** Every chunk copied as it comes (a chunk is valid only until the next is asked for). */
async function collect(it: AsyncGenerator<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(Buffer.from(c));
  return out;
}

describe('readAhead: a byte range a chunk at a time', () => {
  let dir: string;
  let file: string;
  const bytes = Buffer.alloc(20 * MiB + 12345);
  before(() => {
    randomFillSync(bytes);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-readahead-'));
    file = path.join(dir, 'big.bin');
    fs.writeFileSync(file, bytes);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('from a file on disk: the exact bytes of the range, in chunks of the buffer size', async () => {
    const fh = await fsp.open(file, 'r');
    try {
      const chunks = await collect(readAhead(fh, 7, bytes.length - 20, bufs(), ended));
      assert.ok(Buffer.concat(chunks).equals(bytes.subarray(7, bytes.length - 13)));
      assert.ok(chunks.slice(0, -1).every((c) => c.length === MiB));
      assert.equal(chunks.length, Math.ceil((bytes.length - 20) / MiB));
    } finally {
      await fh.close();
    }
  });

  it('the same bytes from a handle over bytes in memory (a small file read whole)', async () => {
    const fh = new MemoryHandle(bytes).asFileHandle();
    const chunks = await collect(readAhead(fh, 7, bytes.length - 20, bufs(), ended));
    assert.ok(Buffer.concat(chunks).equals(bytes.subarray(7, bytes.length - 13)));
  });

  it('gives the event loop turns while it reads a large range from disk (a server stays responsive)', async () => {
    const fh = await fsp.open(file, 'r');
    let turns = 0;
    let timer: NodeJS.Immediate | undefined;
    const tick = () => {
      turns++;
      timer = setImmediate(tick);
    };
    timer = setImmediate(tick);
    try {
      let before = -1;
      for await (const c of readAhead(fh, 0, bytes.length, bufs(), ended)) {
        void c;
        if (before < 0) before = turns;
      }
      // 20 MiB in 1 MiB chunks: the loop gets turns between them, however fast the disk.
      assert.ok(turns - before >= 2, `turns while reading: ${turns - before}`);
    } finally {
      clearImmediate(timer);
      await fh.close();
    }
  });

  it('a caller that stops early leaves no read running into its buffers; an empty range yields nothing', async () => {
    const fh = await fsp.open(file, 'r');
    // A slow disk: each read lands 30 ms after it is asked for, so one is surely in flight at the break.
    const slow = {
      read: async (...args: Parameters<typeof fh.read>) => {
        await new Promise((r) => setTimeout(r, 30));
        return fh.read(...args);
      },
    } as unknown as fsp.FileHandle;
    try {
      const b = bufs();
      b.forEach((x) => x.fill(0xee));
      for await (const c of readAhead(slow, 0, bytes.length, b, ended)) {
        assert.ok(c.equals(bytes.subarray(0, MiB)));
        break; // the next chunk's read is in flight: the generator's cleanup waits for it
      }
      // Whatever was in flight has landed before the loop ended: the buffers change no more.
      assert.ok(b[1].equals(bytes.subarray(MiB, 2 * MiB)), 'the read in flight finished before the loop ended');
      const after = b.map((x) => Buffer.from(x));
      await new Promise((r) => setTimeout(r, 80));
      assert.ok(b.every((x, i) => x.equals(after[i])));
      assert.deepEqual(await collect(readAhead(fh, 5, 0, bufs(), ended)), []);
    } finally {
      await fh.close();
    }
  });

  it('a file that ends before the range: the error names where the missing byte is, relative to the range', async () => {
    const short = path.join(dir, 'short.bin');
    fs.writeFileSync(short, bytes.subarray(0, 2.5 * MiB));
    for (const open of [
      async () => ({ fh: await fsp.open(short, 'r'), close: true }),
      async () => ({ fh: new MemoryHandle(bytes.subarray(0, 2.5 * MiB)).asFileHandle(), close: false }),
    ]) {
      const { fh, close } = await open();
      const seen: number[] = [];
      try {
        await assert.rejects(
          (async () => {
            for await (const c of readAhead(fh, 1000, 3 * MiB, bufs(), ended)) seen.push(c.length);
          })(),
          (e: Error & { at?: number }) => e.at === 2.5 * MiB - 1000,
        );
        // the whole chunks before the end were given first
        assert.deepEqual(seen, [MiB, MiB]);
      } finally {
        if (close) await fh.close();
      }
    }
  });
});
