/**
 * The sync planner on its own (planSync is pure), fed the copy map and statuses the engine builds
 * from the torch-written fixture workspace (test/fixtures/workspace, one file per status): per copy,
 * the action and its reason, blocked LoRAs, `force`, and the `loras` / `copies` filters.
 */
import { strict as assert } from 'node:assert';
import { rm } from 'node:fs/promises';
import type { Workspace } from '../../server/src/engine/workspace';
import {
  droppedKeysText,
  keysOnlyInCopy,
  type PlannedCopy,
  type PlannedLora,
  planCounts,
  planSync,
} from '../../server/src/engine/syncPlanner';
import type { FileEntry } from '../../server/src/engine/loraFile';
import { expectedFiles as expected, scannedFixtureWorkspace } from '../support/fixtureWorkspace';

const copies = expected.filter((e) => e.role === 'copy');

/** What the planner should do with a copy of this status, unforced and forced (the README's sync rules). */
const ACTION: Record<string, [PlannedCopy['action'], PlannedCopy['action']]> = {
  IN_SYNC: ['skip', 'skip'],
  STALE: ['write', 'write'],
  METADATA_DRIFT: ['write', 'write'],
  DIVERGED: ['refuse', 'force'],
  PARAM_COUNT_MISMATCH: ['refuse', 'force'],
  SHAPE_MISMATCH: ['refuse', 'force'],
  DTYPE_MISMATCH: ['refuse', 'force'],
  CORRUPT: ['refuse', 'refuse'],
  UNSAFE: ['refuse', 'refuse'],
  ORPHAN: ['refuse', 'refuse'],
};

describe('sync planner (planSync on the fixture workspace)', function () {
  this.timeout(60_000);
  let dir: string;
  let ws: Workspace;
  const plan = (opts: Parameters<typeof planSync>[2] = {}): PlannedLora[] =>
    planSync(ws.copyMap(), (e: FileEntry) => ws.status(e.path)!, opts);
  const byPath = (p: PlannedLora[]) => new Map(p.flatMap((l) => l.copies.map((c) => [c.path, c] as const)));

  before(async () => {
    ({ dir, ws } = await scannedFixtureWorkspace('lora-planner-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('plans every copy, never a source, with the status the rules gave it', () => {
    const got = byPath(plan());
    assert.deepEqual([...got.keys()].sort(), copies.map((c) => c.path).sort());
    for (const c of copies) assert.equal(got.get(c.path)!.status, c.expect, c.path);
  });

  for (const force of [false, true]) {
    it(`${force ? 'forced' : 'unforced'}: each copy's action follows its status, blocked LoRAs refuse everything`, () => {
      const got = byPath(plan({ force }));
      for (const c of copies) {
        const p = got.get(c.path)!;
        const want =
          c.sync_blocked && ACTION[c.expect][force ? 1 : 0] !== 'skip' ? 'refuse' : ACTION[c.expect][force ? 1 : 0];
        assert.equal(p.action, want, `${c.path} (${c.expect}${c.sync_blocked ? `, ${c.sync_blocked}` : ''}): ${p.why}`);
      }
    });
  }

  it('says why, in words a user acts on', () => {
    const got = byPath(plan());
    const why = (status: string) => got.get(copies.find((c) => c.expect === status && !c.sync_blocked)!.path)!.why;
    assert.equal(why('IN_SYNC'), 'already in sync');
    assert.equal(why('STALE'), 'the source moved on');
    // The fixture's drifted copy has a key of its own (hand_note): the write drops it, after a backup.
    assert.equal(
      why('METADATA_DRIFT'),
      'general metadata differs from the source; drops metadata.hand_note (only this copy had it, not a copy key): a backup is kept',
    );
    assert.match(why('DIVERGED'), /use --force \(a backup is kept\)/);
    assert.equal(why('ORPHAN'), 'no source to sync from');
    assert.match(why('CORRUPT'), /cannot be read/);
    assert.match(why('UNSAFE'), /code that torch\.load would run/);
    const forced = byPath(plan({ force: true }));
    assert.equal(
      forced.get(copies.find((c) => c.expect === 'SHAPE_MISMATCH')!.path)!.why,
      'forced: the old copy (SHAPE_MISMATCH) is kept as a backup',
    );
  });

  it('blocks a LoRA with duplicate sources, an unsafe source or no source, naming why', () => {
    const loras = new Map(plan().map((l) => [l.id, l]));
    assert.match(loras.get('lora_d')!.blocked!, /^2 sources claim this id \(.*LoRA_D\.pt.*\): keep one$/);
    assert.match(loras.get('lora_e')!.blocked!, /^its source .*LoRA_E\.pt is unsafe \(.*\)/);
    assert.equal(loras.get('lora_c')!.blocked, 'it has no source in a source folder');
    assert.equal(loras.get('lora_a')!.blocked, undefined);
    assert.equal(loras.get('lora_a')!.source, '⭐_AKTIF_EN_IYILER/LoRA_A.pt');
    const blockedStale = copies.find((c) => c.sync_blocked === 'DUPLICATE_SOURCE')!;
    assert.match(byPath(plan()).get(blockedStale.path)!.why, /^the LoRA is blocked: 2 sources claim this id/);
  });

  it('keeps only the LoRAs and copies asked for', () => {
    const one = plan({ loras: ['lora_b'] });
    assert.deepEqual(
      one.map((l) => l.id),
      ['lora_b'],
    );
    assert.equal(one[0].copies.length, copies.filter((c) => c.lora_id === 'lora_b').length);
    const stale = copies.find((c) => c.expect === 'STALE' && c.lora_id === 'lora_a')!.path;
    const only = plan({ copies: [stale] });
    assert.deepEqual(
      only.map((l) => [l.id, l.copies.map((c) => c.path)]),
      [['lora_a', [stale]]],
    );
    assert.deepEqual(plan({ copies: ['no/such/copy.pt'] }), []);
  });

  it('counts actions', () => {
    const p = plan();
    const n = planCounts(p);
    const all = p.flatMap((l) => l.copies);
    assert.equal(n.write + n.force + n.skip + n.refuse, all.length);
    for (const a of ['write', 'force', 'skip', 'refuse'] as const)
      assert.equal(n[a], all.filter((c) => c.action === a).length, a);
    assert.equal(n.force, 0);
    assert.equal(planCounts(plan({ force: true })).force, copies.filter((c) => ACTION[c.expect][1] === 'force').length);
  });

  it('names the keys a write drops: those only the copy has, but not a config the source has none of', () => {
    const entry = (metaKeys: Record<string, string>, configDigest?: string) =>
      ({ metaKeys, configDigest }) as FileEntry;
    const src = entry({ 'metadata.a': '1', 'adapter_config.r': '8' }, 'cfg');
    const copy = entry({
      'metadata.a': '2',
      'metadata.notes': 'x',
      'adapter_config.r': '8',
      'adapter_config.extra': '1',
    });
    assert.deepEqual(keysOnlyInCopy(copy, src), ['metadata.notes', 'adapter_config.extra']);
    // A source without adapter_config.json leaves the copy's in place (unitConfigSync.ts): not dropped.
    assert.deepEqual(keysOnlyInCopy(copy, entry({ 'metadata.a': '1' })), ['metadata.notes']);
    assert.deepEqual(keysOnlyInCopy(entry({ 'adapter_config.json': '"{"' }), src), ['adapter_config.json']);
    assert.equal(
      droppedKeysText(['metadata.notes', 'adapter_config.json'], false),
      'drops metadata.notes (only this copy had it, not a copy key) and replaces its adapter_config.json, which is not valid JSON',
    );
    assert.equal(droppedKeysText(['a', 'b'], true), 'dropped a, b (only this copy had them, not a copy key)');
  });
});
