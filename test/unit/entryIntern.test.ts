/**
 * The interner (engine/entryIntern.ts): equal parts of entries become one object, values never
 * change, and the digests an index keeps are strings of their own, not views that keep the 64-digit
 * texts they were cut from (measured on the heap of a child process, by a full collection).
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { hash } from 'node:crypto';
import { join } from 'node:path';
import { EntryInterner } from '../../server/src/engine/entryIntern';
import type { FileEntry } from '../../server/src/engine/loraFile';

const cut = (s: string, n: number) => hash('sha256', s, 'hex').slice(0, n);

function entry(i: number, lora: number): FileEntry {
  return {
    path: `team${i}/lora${lora}.pt`,
    loraId: `lora_${lora}`,
    name: `LoRA ${lora}`,
    tensors: [
      { name: 'layers.0.lora_A', dtype: 'float32', shape: [8, 64], digest: cut(`A${lora}`, 32) },
      { name: 'layers.0.lora_B', dtype: 'float32', shape: [64, 8], digest: cut(`B${lora}`, 32) },
    ],
    tensorsDigest: cut(`list${lora}`, 32),
    metaDigest: cut(`meta${lora}`, 32),
    metaKeys: { 'metadata.notes': cut(`notes${lora}`, 16), 'metadata.id': `=["str","lora_${lora}"]` },
    copyKeys: ['team'],
    unsafeGlobals: [],
    syncInfo: { lastSyncTime: '2025-12-04T10:50:00', reason: 'LEARNING_UPDATE' },
  } as unknown as FileEntry;
}

describe('EntryInterner', () => {
  it('makes equal parts of entries one object and changes no value', () => {
    const intern = new EntryInterner();
    const made = [entry(0, 1), entry(1, 1), entry(2, 2)];
    const copies = made.map((e) => structuredClone(e));
    const kept = made.map((e) => intern.entry(e));
    assert.deepEqual(kept, copies, 'every value as it was');
    assert.equal(kept[0].tensors, kept[1].tensors, 'one tensor list for two copies of a LoRA');
    assert.equal(kept[0].metaKeys, kept[1].metaKeys, 'one metadata record for them');
    assert.equal(kept[0].copyKeys, kept[2].copyKeys, 'one copy-key list for all');
    assert.notEqual(kept[0].tensors, kept[2].tensors, 'another LoRA keeps its own list');
    assert.equal(kept[2].tensors[0].shape, kept[0].tensors[0].shape, 'equal shapes shared across LoRAs');
  });

  it('keeps each digest as a string of its own, not a view of the longer text it was cut from', function () {
    this.timeout(60_000);
    // Entries whose digests are cut from SHA-256's hex (views, as a scan makes them), interned and
    // kept; a heap snapshot then counts the 64-digit texts still alive (a snapshot collects first).
    const keep = (mode: string) => {
      const r = spawnSync(
        process.execPath,
        ['--import', 'tsx', join(__dirname, '..', 'support', 'internHeap.ts'), mode],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as { texts: number; n: number; sample: string };
    };
    const views = keep('view');
    assert.equal(views.n, 5_000);
    assert.match(views.sample, /^[0-9a-f]{32}$/);
    // Four kept digests an entry: as views, 20,000 texts of 64 digits would stay alive.
    assert.ok(views.texts < 100, `${views.texts} 64-digit texts kept alive by 5,000 entries`);
    assert.ok(keep('own').texts < 100, 'the control keeps none either');
  });
});
