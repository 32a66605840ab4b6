/**
 * Child process of the format benchmark: opens and fingerprints the given files (CRC of every
 * record + tensor digests), prints elapsed ms and peak RSS as JSON. Run in its own process so its
 * memory figure is its own.
 */
import { withCheckpoint } from '../../server/src/formats/checkpoint';
import { fingerprintCheckpoint } from '../../server/src/formats/fingerprint';
import { mapLimit } from '../../server/src/io/mapLimit';
import { readFileSync } from 'node:fs';
import { hashBackend } from '../../server/src/formats/hashBackend';
import { peakRssMB } from '../../server/src/io/peakRss';

/**
 * `--floor FILE`: the CPU floor of the two passes the format asks for, on bytes already in memory:
 * CRC32 of the whole file plus XXH64 of it, best of 3 (no reading, no parsing, no leaves).
 */
async function floor(file: string): Promise<void> {
  const bytes = readFileSync(file);
  const b = hashBackend();
  const h = await b.xxh64();
  const out = Buffer.alloc(8);
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    b.crc32(bytes);
    h.init();
    h.update(bytes);
    h.digestInto(out, 0);
    best = Math.min(best, performance.now() - t0);
  }
  process.stdout.write(`${JSON.stringify({ ms: best, maxRssMB: peakRssMB(), backend: b.name })}\n`);
}

async function main() {
  if (process.argv[2] === '--floor') return floor(process.argv[3]);
  const files = process.argv.slice(2);
  const t0 = performance.now();
  let tensors = 0;
  await mapLimit(files, 8, (f) =>
    withCheckpoint(f, async (c) => {
      const fp = await fingerprintCheckpoint(c);
      if (fp.crcFailures.length) throw new Error(`${f}: CRC failure`);
      tensors += fp.tensors.length;
    }),
  );
  const ms = performance.now() - t0;
  process.stdout.write(`${JSON.stringify({ ms, tensors, maxRssMB: peakRssMB(), backend: hashBackend().name })}\n`);
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
