/**
 * The safety scan's cost next to the decoder's, per data.pkl of every torch-written fixture (and the
 * legacy fixture's pickles): median of many runs each, in µs. `node --import tsx scripts/bench/safetyScan.ts`
 * (docs/safety.md keeps the figures). The scan runs on every cold read of every file, so it must stay
 * a small fraction of decoding.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodePickle } from '../../server/src/formats/pickle/decoder';
import { scanPickles } from '../../server/src/formats/pickle/safetyScan';
import { scanFindings } from '../../server/src/formats/safety';
import { ZipReader } from '../../server/src/formats/zip/zipReader';

const dir = join(__dirname, '..', '..', 'test', 'fixtures', 'torch');

function median(fn: () => void, minMs = 200): number {
  for (let i = 0; i < 50; i++) fn(); // warm up
  const samples: number[] = [];
  const until = performance.now() + minMs;
  while (performance.now() < until || samples.length < 51) {
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) fn();
    samples.push(((performance.now() - t0) / 20) * 1000);
  }
  samples.sort((a, b) => a - b);
  return samples[samples.length >> 1];
}

export function benchSafetyScan(): Array<{ file: string; bytes: number; scanUs: number; decodeUs: number }> {
  const rows: Array<{ file: string; bytes: number; scanUs: number; decodeUs: number }> = [];
  for (const n of readdirSync(dir).sort()) {
    if (!n.endsWith('.pt')) continue;
    const bytes = readFileSync(join(dir, n));
    let pkl: Buffer | undefined;
    if (bytes.subarray(0, 2).toString() === 'PK') {
      try {
        const z = ZipReader.fromBytes(bytes);
        const r = z.records.find((x) => x.name.endsWith('/data.pkl'));
        pkl = r ? z.readInMemory(r, { checkCrc: false }) : undefined;
      } catch {
        continue; // a deliberately broken fixture
      }
    } else if (bytes[0] === 0x80) pkl = bytes.subarray(0, Math.min(bytes.length, 1 << 20));
    if (!pkl) continue;
    const p = pkl;
    let decodable = true;
    try {
      decodePickle(p);
    } catch {
      decodable = false;
    }
    if (!decodable) continue;
    const scanUs = median(() => scanFindings(scanPickles(p, { maxPickles: n === 'legacy.pt' ? 5 : Infinity })));
    // A legacy file: its five pickles, one after the other (the decoder stops at each STOP).
    const decodeAll = () => {
      let at = 0;
      for (let k = 0; k < (n === 'legacy.pt' ? 5 : 1); k++) at += decodePickle(p.subarray(at)).end;
    };
    const decodeUs = median(decodeAll);
    rows.push({ file: n, bytes: p.length, scanUs, decodeUs });
  }
  return rows;
}

if (require.main === module) {
  const rows = benchSafetyScan();
  for (const r of rows)
    console.log(
      `${r.file.padEnd(24)} ${String(r.bytes).padStart(7)} B  scan ${r.scanUs.toFixed(1).padStart(6)} µs  decode ${r.decodeUs.toFixed(1).padStart(7)} µs  ${((100 * r.scanUs) / r.decodeUs).toFixed(0)} %`,
    );
  const s = rows.reduce((a, r) => a + r.scanUs, 0);
  const d = rows.reduce((a, r) => a + r.decodeUs, 0);
  console.log(
    `all ${rows.length}: scan ${s.toFixed(0)} µs, decode ${d.toFixed(0)} µs (${((100 * s) / d).toFixed(0)} %)`,
  );
}
