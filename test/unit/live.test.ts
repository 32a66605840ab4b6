/**
 * The live loop's policy on the torch-written workspace: auto-sync off reports only; onSourceChange
 * syncs a changed source's STALE copies (never DIVERGED), a copy that appears in a new folder is
 * tracked and synced, fullSyncEvery runs the full pass; and one end-to-end run through the real watcher.
 */
import { copyFixtureWorkspace } from '../support/files';
import { strict as assert } from 'node:assert';
import { mkdir, rm, writeFile, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Workspace } from '../../server/src/engine/workspace';
import { LiveIndex, type LiveEvent } from '../../server/src/engine/liveIndex';
import { trainerStep } from '../../server/src/demo/trainerStep';

const SRC_A = '⭐_AKTIF_EN_IYILER/LoRA_A.pt';

async function live(
  dir: string,
  cfg: object,
  watch = false,
): Promise<{ li: LiveIndex; events: LiveEvent[]; ws: Workspace }> {
  await writeFile(join(dir, 'lora-sync.json'), JSON.stringify({ debounceMs: 50, settleMs: 200, ...cfg }));
  const ws = await Workspace.open(dir);
  const events: LiveEvent[] = [];
  const li = new LiveIndex(ws, (e) => events.push(e), { watch });
  await li.start();
  return { li, events, ws };
}

describe('live loop and auto-sync', function () {
  this.timeout(60000);
  let dir: string;
  beforeEach(async () => {
    dir = await copyFixtureWorkspace('lora-live-');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('auto-sync off: a retrained source makes its copies STALE and nothing is written', async () => {
    const { li, events, ws } = await live(dir, { autoSync: 'off' });
    await trainerStep(join(dir, SRC_A), { match: 51 });
    await li.handle({ added: [], changed: [join(dir, SRC_A)], removed: [] });
    const st = events.find((e) => e.kind === 'statuses');
    assert.ok(st && st.kind === 'statuses');
    assert.deepEqual(
      st.changes
        .filter((c) => c.after === 'STALE')
        .map((c) => c.path)
        .sort(),
      ['🏛️_NEWTON_HALL/LoRA_A_7a8b9c.pt', '💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt'],
    );
    assert.ok(!events.some((e) => e.kind === 'synced'));
    assert.equal(ws.status('💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt')!.status, 'STALE');
    await li.stop();
  });

  it('onSourceChange: the STALE copies of the changed source are synced, the DIVERGED one is not', async () => {
    const { li, events, ws } = await live(dir, { autoSync: 'onSourceChange' });
    await trainerStep(join(dir, SRC_A), { match: 51 });
    await li.handle({ added: [], changed: [join(dir, SRC_A)], removed: [] });
    const synced = events.find((e) => e.kind === 'synced');
    assert.ok(synced && synced.kind === 'synced');
    assert.equal(synced.reason, 'LEARNING_UPDATE');
    assert.deepEqual(synced.loras, ['lora_a']);
    for (const p of [
      '💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt',
      'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt',
      '🏛️_NEWTON_HALL/LoRA_A_7a8b9c.pt',
    ])
      assert.equal(ws.status(p)!.status, 'IN_SYNC', p);
    assert.equal(ws.status('İstanbul_Başakşehir/🎯_DRAW_EXPERTS/LoRA_A_0d0e0f.pt')!.status, 'DIVERGED');
    // other LoRAs' stale copies were not part of it
    assert.equal(ws.status('💎_PERFECT_HYBRID_HALL/LoRA_B_b0b1b2.pt')!.status, 'STALE');
    const { events: hist } = await ws.history.read();
    assert.ok(hist.some((h) => h.event === 'SYNC' && h.lora_id === 'lora_a' && h.reason === 'LEARNING_UPDATE'));
    await li.stop();
  });

  // Regression (soak suite, issue 15): auto-sync changed copies' statuses without a `statuses`
  // event, so `lora-sync watch` printed copies going STALE and never coming back to IN_SYNC.
  it('onSourceChange: the copies auto-sync brings back are reported as STALE → IN_SYNC', async () => {
    const { li, events } = await live(dir, { autoSync: 'onSourceChange' });
    await trainerStep(join(dir, SRC_A), { match: 51 });
    await li.handle({ added: [], changed: [join(dir, SRC_A)], removed: [] });
    const synced = events.findIndex((e) => e.kind === 'synced');
    const back = events
      .slice(0, synced)
      .flatMap((e) => (e.kind === 'statuses' ? e.changes : []))
      .filter((c) => c.after === 'IN_SYNC' && c.before === 'STALE')
      .map((c) => c.path)
      .sort();
    assert.deepEqual(back, [
      'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt',
      '🏛️_NEWTON_HALL/LoRA_A_7a8b9c.pt',
      '💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt',
    ]);
    await li.stop();
  });

  it('a copy that appears in a new folder is tracked at once and synced (ROLE_CHANGE)', async () => {
    const { li, events, ws } = await live(dir, { autoSync: 'onSourceChange' });
    await mkdir(join(dir, '🌟_EINSTEIN_HALL'));
    const p = '🌟_EINSTEIN_HALL/LoRA_B_e1e2e3.pt';
    await copyFile(join(dir, '💎_PERFECT_HYBRID_HALL/LoRA_B_b0b1b2.pt'), join(dir, p));
    await li.handle({ added: [join(dir, p)], changed: [], removed: [] });
    assert.deepEqual(events.find((e) => e.kind === 'statuses' && e.changes.some((c) => c.path === p)) && true, true);
    const s = events.find((e) => e.kind === 'synced');
    assert.ok(s && s.kind === 'synced' && s.reason === 'ROLE_CHANGE');
    assert.equal(ws.status(p)!.status, 'IN_SYNC');
    await li.stop();
  });

  it('fullSyncEvery: after N source updates, a full verify and sync of every LoRA', async () => {
    const { li, events, ws } = await live(dir, { autoSync: 'onSourceChange', fullSyncEvery: 2 });
    await trainerStep(join(dir, SRC_A), { match: 51 });
    await li.handle({ added: [], changed: [join(dir, SRC_A)], removed: [] });
    assert.ok(!events.some((e) => e.kind === 'verified'));
    await trainerStep(join(dir, SRC_A), { match: 52 });
    await li.handle({ added: [], changed: [join(dir, SRC_A)], removed: [] });
    assert.ok(events.some((e) => e.kind === 'verified'));
    const full = events.find((e) => e.kind === 'synced' && e.reason === 'FULL_SYNC');
    assert.ok(full && full.kind === 'synced' && full.loras.includes('lora_b'), 'other LoRAs synced by the full pass');
    assert.equal(ws.status('💎_PERFECT_HYBRID_HALL/LoRA_B_b0b1b2.pt')!.status, 'IN_SYNC');
    await li.stop();
  });

  it('end to end through the real watcher: a retrained source is seen and its copies synced', async () => {
    const { li, events, ws } = await live(dir, { autoSync: 'onSourceChange' }, true);
    await trainerStep(join(dir, SRC_A), { match: 51 });
    const deadline = Date.now() + 15000;
    while (!events.some((e) => e.kind === 'synced') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    await li.idle();
    assert.ok(
      events.some((e) => e.kind === 'synced'),
      `events: ${events.map((e) => e.kind).join(',')}`,
    );
    assert.equal(ws.status('💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt')!.status, 'IN_SYNC');
    await li.stop();
  });
});
