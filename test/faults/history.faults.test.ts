/**
 * The history log when a sync dies while appending to it:
 *
 * - SIGKILL of the CLI at the append's steps (fault seam: before the write, after the write and
 *   before the flush): the log parses whole, no earlier event is lost, the next run appends;
 * - a torn last line at every byte of the last append (what a crash leaves when only a prefix of
 *   the write reached the disk): the next append (in process for every byte, through the CLI for a
 *   sample) drops the torn part, keeps every complete earlier line, and adds its own.
 */
import { strict as assert } from 'node:assert';
import { copyFile, readFile, rm, stat, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { History, type HistoryEvent } from '../../server/src/engine/history';
import { copyFixtureWorkspace } from '../support/files';
import { trainerStep } from '../../server/src/demo/trainerStep';
import { addFigure } from './figures';
import { privateCli, runCli, tempDir } from './support';

const SEC = 'interruption';
const SOURCE_A = '⭐_AKTIF_EN_IYILER/LoRA_A.pt';

describe('interruption: the history log when a sync dies mid-append', function () {
  this.timeout(120_000);
  let tmp: string;
  let cli: string;
  before(async () => {
    tmp = await tempDir('lora-hist-');
    cli = await privateCli(tmp);
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  /** A workspace whose log already holds events, with copies to sync. */
  async function withHistory(): Promise<{ dir: string; earlier: HistoryEvent[] }> {
    const dir = await copyFixtureWorkspace('lora-hist-ws-');
    await runCli(cli, ['verify', '--root', dir]);
    await runCli(cli, ['sync', '--lora', 'lora_b', '--root', dir]);
    const { events } = await new History(dir).read();
    assert.ok(events.length >= 10);
    return { dir, earlier: events };
  }

  for (const point of ['history:write', 'history:written']) {
    it(`SIGKILL at ${point}: the log parses whole, no earlier event lost, the next run appends`, async () => {
      const { dir, earlier } = await withHistory();
      try {
        const r = await runCli(cli, ['sync', '--all', '--root', dir], { env: { LORA_SYNC_FAULTS: `kill@${point}` } });
        assert.equal(r.signal, 'SIGKILL', r.out + r.err);
        const h = new History(dir);
        const after = await h.read();
        assert.equal(after.skippedLines, 0);
        assert.deepEqual(after.events.slice(0, earlier.length), earlier, 'earlier events changed');
        // Before the write nothing of this run is there; after it, its events are (the page cache has them).
        assert.equal(after.events.length > earlier.length, point === 'history:written');
        const v = await runCli(cli, ['verify', '--root', dir]);
        assert.ok(v.code === 0 || v.code === 1, v.err);
        const next = await h.read();
        assert.equal(next.skippedLines, 0);
        assert.deepEqual(next.events.slice(0, after.events.length), after.events);
        assert.ok(next.events.length > after.events.length, 'the next run appended nothing');
        addFigure(SEC, 'history kills', 1);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }

  it('a torn last line at every byte of the last append: repaired by the next append, nothing earlier lost', async () => {
    const { dir, earlier } = await withHistory();
    try {
      const log = new History(dir).path;
      const before = (await stat(log)).size;
      await trainerStep(join(dir, SOURCE_A), { match: 51 });
      assert.equal((await runCli(cli, ['sync', '--all', '--root', dir])).code, 0);
      const full = await readFile(log);
      const last = full.subarray(before);
      assert.ok(
        last.length > 200 && last.toString().split('\n').length > 2,
        'the last append should hold several lines',
      );
      // Every complete line before a cut is kept; the partial one is dropped.
      const eventsBefore = (cut: number) =>
        earlier.length + full.subarray(before, cut).toString().split('\n').length - 1;
      const whole = join(tmp, 'whole.jsonl');
      await copyFile(log, whole);
      let cases = 0;
      for (let cut = before + 1; cut < full.length; cut++) {
        await copyFile(whole, log);
        await truncate(log, cut);
        const h = new History(dir);
        await h.append([
          {
            time: '2026-01-01T00:00:00.000Z',
            event: 'VERIFY',
            lora_id: 'after-crash',
            name: 'after',
            consistent: true,
          },
        ]);
        const r = await h.read();
        assert.equal(r.skippedLines, 0, `cut at ${cut}`);
        const kept = eventsBefore(cut);
        assert.equal(r.events.length, kept + 1, `cut at ${cut}`);
        assert.deepEqual(r.events.slice(0, earlier.length), earlier, `cut at ${cut}: earlier events changed`);
        assert.equal(r.events[kept].lora_id, 'after-crash');
        cases++;
      }
      // The same through the CLI (its next run repairs, then appends) for a few cuts.
      for (const frac of [0.05, 0.3, 0.5, 0.77, 0.99]) {
        const cut = before + Math.max(1, Math.floor(last.length * frac));
        await copyFile(whole, log);
        await truncate(log, cut);
        const torn = await runCli(cli, ['history', '--json', '--limit', '100000', '--root', dir]);
        assert.equal(
          (JSON.parse(torn.out) as { skipped_lines: number }).skipped_lines,
          full[cut - 1] === 0x0a ? 0 : 1,
          'the torn line is reported, not parsed',
        );
        await runCli(cli, ['verify', '--root', dir]);
        const r = await new History(dir).read();
        assert.equal(r.skippedLines, 0);
        assert.deepEqual(r.events.slice(0, earlier.length), earlier);
        assert.equal(r.events.length, eventsBefore(cut) + 9, 'the verify events were not appended after the kept ones');
        cases++;
      }
      addFigure(SEC, 'torn history lines repaired', cases);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
