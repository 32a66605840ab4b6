/**
 * Child of entryIntern.test.ts (run with --expose-gc): interns N entries whose digests are cut from
 * longer hex texts, as a scan makes them, keeps them, and prints the heap they keep after a full
 * collection, in bytes per entry. `own` first gives each digest a string of its own (the control:
 * nothing left for the interner to copy).
 */
import { hash } from 'node:crypto';
import { EntryInterner } from '../../server/src/engine/entryIntern';
import type { FileEntry } from '../../server/src/engine/loraFile';

const N = 20_000;
const own = process.argv[2] === 'own';
const gc = (globalThis as { gc?: () => void }).gc!;
const cut = (s: string, n: number) => {
  const view = hash('sha256', s, 'hex').slice(0, n);
  return own ? JSON.parse(`"${view}"`) : view;
};

/** The entries a scan of N files would keep, interned (the interner is dropped on return, as after a scan). */
function scan(): FileEntry[] {
  const intern = new EntryInterner();
  const kept: FileEntry[] = [];
  for (let i = 0; i < N; i++) {
    const e = {
      path: `p${i}`,
      tensors: [{ name: 'layers.0.lora_A', dtype: 'float32', shape: [8, 64], digest: cut(`t${i}`, 32) }],
      tensorsDigest: cut(`l${i}`, 32),
      metaDigest: cut(`m${i}`, 32),
      metaKeys: { 'metadata.notes': cut(`k${i}`, 16), 'metadata.id': `=["str","lora_${i}"]` },
      copyKeys: [],
      unsafeGlobals: [],
      syncInfo: {},
    } as unknown as FileEntry;
    kept.push(intern.entry(e));
  }
  return kept;
}

gc();
gc();
const before = process.memoryUsage().heapUsed;
const kept = scan();
gc();
gc();
const perEntry = (process.memoryUsage().heapUsed - before) / N;
process.stdout.write(`${JSON.stringify({ perEntry, n: kept.length, sample: kept[7] })}\n`);
