/**
 * Child of entryIntern.test.ts: interns N entries whose digests are cut from longer hex texts, as a
 * scan makes them, keeps them, then counts in a heap snapshot (which collects everything unreachable
 * first) the 64-digit texts still alive. A digest kept as a view keeps its text; one of its own does
 * not. `own` gives each digest a string of its own before interning (the control).
 */
import { hash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeHeapSnapshot } from 'node:v8';
import { EntryInterner } from '../../server/src/engine/entryIntern';
import type { FileEntry } from '../../server/src/engine/loraFile';

const N = 5_000;
const own = process.argv[2] === 'own';
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

const kept = scan();
const file = writeHeapSnapshot(join(tmpdir(), `lora-intern-${process.pid}.heapsnapshot`));
const snap = JSON.parse(readFileSync(file, 'utf8'));
rmSync(file, { force: true });
const fields: string[] = snap.snapshot.meta.node_fields;
const types: string[] = snap.snapshot.meta.node_types[0];
const [ti, ni, width] = [fields.indexOf('type'), fields.indexOf('name'), fields.length];
let texts = 0;
for (let i = 0; i < snap.nodes.length; i += width)
  if (types[snap.nodes[i + ti]] === 'string' && /^[0-9a-f]{64}$/.test(snap.strings[snap.nodes[i + ni]])) texts++;
process.stdout.write(`${JSON.stringify({ texts, n: kept.length, sample: kept[7].tensorsDigest })}\n`);
