/**
 * A scan shares the event loop: the language server runs it beside its requests, so a cold scan of
 * thousands of small files (read with synchronous calls) must give the loop a turn every few dozen
 * files, not once at its end. Counted in files between turns, not in milliseconds (no timed test).
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSeedWorkspace } from '../../server/src/demo/seedWorkspace';
import { BATCH } from '../../server/src/engine/entryPool';
import { KEYS_PER_TURN } from '../../server/src/engine/scanner';
import { Workspace } from '../../server/src/engine/workspace';

describe('a scan gives the event loop its turns', () => {
  let root: string;
  before(async function () {
    this.timeout(120_000);
    root = await mkdtemp(join(tmpdir(), 'lora-turns-'));
    // More files than one turn's worth of keys, and many read batches.
    await generateSeedWorkspace(root, { loras: 300, copies: 1_200 });
    // Written an hour ago: a file written just before a scan is read again by the next (racily clean).
    const past = new Date(Date.now() - 3_600_000);
    for (const f of await readdir(root, { recursive: true, withFileTypes: true }))
      if (f.isFile()) await utimes(join(f.parentPath ?? f.path, f.name), past, past);
  });
  after(async () => rm(root, { recursive: true, force: true }));

  it('keys and reads a few dozen files between two turns, cold and warm', async function () {
    this.timeout(120_000);
    for (const phase of ['cold', 'warm']) {
      const ws = await Workspace.open(root);
      let turns = 0;
      let keyed = 0; // files keyed since the last turn (the keys loop asks `cancelled` once a file)
      let read = 0; // files read since the last turn (onProgress comes once a batch)
      let maxKeyed = 0;
      let maxRead = 0;
      let running = true;
      const turn = () => {
        turns++;
        keyed = 0;
        read = 0;
        if (running) setImmediate(turn);
      };
      setImmediate(turn);
      let reported = 0;
      const s = await ws.scan({
        workers: false,
        cancelled: () => {
          maxKeyed = Math.max(maxKeyed, ++keyed);
          return false;
        },
        onProgress: (done) => {
          read += done - reported;
          reported = done;
          maxRead = Math.max(maxRead, read);
        },
      });
      running = false;
      assert.ok(s.files > KEYS_PER_TURN, `${s.files} files`);
      assert.equal(s.read, phase === 'cold' ? s.files : 0, `${phase}: files read`);
      assert.ok(maxKeyed <= KEYS_PER_TURN + 1, `${phase}: ${maxKeyed} files keyed between two turns`);
      // Two reading loops on the main thread: at most a batch each between two turns.
      if (phase === 'cold') assert.ok(maxRead <= 2 * BATCH, `${maxRead} files read between two turns`);
      assert.ok(turns > s.files / KEYS_PER_TURN, `${turns} turns for ${s.files} files`);
    }
  });

  it('stops reading when cancelled between two batches, and the next scan reads what it did not reach', async function () {
    this.timeout(120_000);
    await rm(join(root, '.lora-sync'), { recursive: true, force: true });
    const ws = await Workspace.open(root);
    let reported = 0;
    // A cancel that arrives (as an LSP $/cancelRequest would, between two turns) once 200 files are read.
    const s = await ws.scan({
      workers: false,
      onProgress: (done) => {
        reported = done;
      },
      cancelled: () => reported >= 200,
    });
    assert.ok(s.read >= 200 && s.read <= 200 + 2 * BATCH, `${s.read} files read before the cancel took`);
    assert.equal(s.removed, 0, 'a cancelled scan removes nothing');
    const known = (await ws.report()).files.length;
    assert.equal(known, s.read, 'what it read is indexed, nothing else');
    const again = await ws.scan({ workers: false });
    assert.equal(again.read, again.files - s.read, 'the next scan reads exactly the files the first did not reach');
    const fresh = await Workspace.open(root);
    await rm(join(root, '.lora-sync'), { recursive: true, force: true });
    await fresh.scan({ workers: false });
    assert.deepEqual(
      (await ws.report()).files.map((f) => [f.path, f.status]),
      (await fresh.report()).files.map((f) => [f.path, f.status]),
      'after both, the statuses of one uncancelled scan',
    );
  });
});
