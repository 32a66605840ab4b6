/**
 * The workspace watcher on a real file system with real chokidar: batches of added / changed /
 * removed files, files reported only once fully written, atomic replaces, exclusions, close(),
 * and the mapping of watch-limit errors to a degraded mode.
 */
import { strict as assert } from 'node:assert';
import { statSync } from 'node:fs';
import { mkdir, mkdtemp, open, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  classifyWatchError,
  type WatcherEvent,
  type WatcherOptions,
  type WatchChange,
  WorkspaceWatcher,
} from '../../server/src/engine/watcher';
import { atomicWrite } from '../../server/src/io/atomicWrite';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const INCLUDE = ['**/*.pt', '**/*.safetensors'];
const FAST = { debounceMs: 80, settleMs: 150 };

interface Harness {
  w: WorkspaceWatcher;
  events: WatcherEvent[];
  changes: () => WatchChange[];
  dir: string;
}

async function withWatcher(
  opts: Partial<WatcherOptions>,
  body: (h: Harness) => Promise<void>,
  setup?: (dir: string) => Promise<void>,
  onEvent?: (e: WatcherEvent) => void,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'lora-watch-'));
  const events: WatcherEvent[] = [];
  const w = new WorkspaceWatcher({ root: dir, include: INCLUDE, exclude: [], ...FAST, ...opts }, (e) => {
    onEvent?.(e);
    events.push(e);
  });
  try {
    await setup?.(dir);
    await w.start();
    await body({ w, events, dir, changes: () => events.flatMap((e) => (e.kind === 'changes' ? [e.changes] : [])) });
  } finally {
    await w.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function waitFor(what: string, pred: () => boolean, ms = 4000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Every change of all batches, merged, for asserting "nothing else was reported". */
const all = (cs: WatchChange[]) => ({
  added: cs.flatMap((c) => c.added).sort(),
  changed: cs.flatMap((c) => c.changed).sort(),
  removed: cs.flatMap((c) => c.removed).sort(),
});

describe('WorkspaceWatcher', function () {
  this.timeout(10000);

  it('does not report the initial files, then reports adds, changes, removals and renames in batches', async () => {
    await withWatcher(
      {},
      async ({ dir, events, changes }) => {
        assert.deepEqual(events, [{ kind: 'ready' }]);
        const a = join(dir, 'a.pt'),
          b = join(dir, 'sub', 'b.safetensors'),
          c = join(dir, 'sub', 'c.safetensors');
        await writeFile(b, 'bbbb');
        await writeFile(a, 'a changed');
        await waitFor('first batch', () => changes().length >= 1);
        await sleep(300);
        assert.deepEqual(changes(), [{ added: [b], changed: [a], removed: [] }]);

        await unlink(a);
        await waitFor('removal', () => changes().length >= 2);
        assert.deepEqual(changes()[1], { added: [], changed: [], removed: [a] });

        await rename(b, c);
        await waitFor('rename', () => changes().length >= 3);
        await sleep(300);
        assert.deepEqual(changes().slice(2), [{ added: [c], changed: [], removed: [b] }]);
      },
      async (dir) => {
        await mkdir(join(dir, 'sub'));
        await writeFile(join(dir, 'a.pt'), 'a');
        await writeFile(join(dir, 'old.pt'), 'untouched');
      },
    );
  });

  it('reports a file written slowly in chunks once, after it is complete (its size read in the callback is final)', async () => {
    const sizes: number[] = [];
    const onChange = (e: WatcherEvent) => {
      if (e.kind === 'changes')
        for (const p of [...e.changes.added, ...e.changes.changed]) sizes.push(statSync(p).size);
    };
    const chunk = Buffer.alloc(64 * 1024, 7);
    const chunks = 15;
    await withWatcher(
      { debounceMs: 80, settleMs: 500 },
      async ({ dir, changes }) => {
        const target = join(dir, 'slow.pt');
        const fh = await open(target, 'w');
        for (let i = 0; i < chunks; i++) {
          await fh.write(chunk);
          await sleep(100);
          assert.equal(changes().length, 0, `reported while still being written (chunk ${i})`);
        }
        await fh.close();
        const done = Date.now();
        await waitFor('the slow file', () => changes().length >= 1, 3000);
        assert.ok(Date.now() - done >= 400, 'reported before the file held still for settleMs');
        await sleep(400);
        assert.deepEqual(all(changes()), { added: [target], changed: [], removed: [] });
        assert.deepEqual(sizes, [chunk.length * chunks]);
      },
      undefined,
      onChange,
    );
  });

  it('reports an in-place rewrite of the same size as changed', async () => {
    await withWatcher(
      {},
      async ({ dir, changes }) => {
        const p = join(dir, 'same.pt');
        await writeFile(p, 'BBBBBBBB');
        await waitFor('the rewrite', () => changes().length >= 1);
        assert.deepEqual(changes(), [{ added: [], changed: [p], removed: [] }]);
      },
      async (dir) => writeFile(join(dir, 'same.pt'), 'AAAAAAAA'),
    );
  });

  it('works with polling too (usePolling)', async () => {
    await withWatcher(
      { usePolling: true },
      async ({ dir, changes }) => {
        const a = join(dir, 'a.pt'),
          b = join(dir, 'b.pt');
        await writeFile(a, 'a, longer now');
        await writeFile(b, 'b');
        await waitFor('the batch', () => changes().length >= 1);
        await unlink(a);
        await waitFor('the removal', () => all(changes()).removed.length >= 1);
        await sleep(300);
        assert.deepEqual(all(changes()), { added: [b], changed: [a], removed: [a] });
      },
      async (dir) => writeFile(join(dir, 'a.pt'), 'a'),
    );
  });

  it('reports an atomic replace (temp file renamed over the target) as one change of the target', async () => {
    await withWatcher(
      {},
      async ({ dir, changes }) => {
        const target = join(dir, 'copies', 'LoRA_A.pt');
        // our own writer: a dot temp file beside the target, written slowly, then renamed over it
        await atomicWrite(
          target,
          async (fh) => {
            for (let i = 0; i < 4; i++) {
              await fh.write(Buffer.alloc(4096, i));
              await sleep(60);
            }
          },
          { noSync: true },
        );
        // and a plain one by hand, as a trainer might do it
        const tmp = join(dir, 'copies', 'LoRA_A.pt.tmp');
        await writeFile(tmp, 'second version');
        await rename(tmp, target);
        await waitFor('the replace', () => changes().length >= 1);
        await sleep(400);
        assert.deepEqual(all(changes()), { added: [], changed: [target], removed: [] });
        assert.equal(changes().length, 1);
      },
      async (dir) => {
        await mkdir(join(dir, 'copies'));
        await writeFile(join(dir, 'copies', 'LoRA_A.pt'), 'first version');
      },
    );
  });

  it('a path removed and then rewritten for longer than a batch may wait: the rest goes out, the path later as one change', async () => {
    await withWatcher(
      {},
      async ({ dir, changes }) => {
        const target = join(dir, 'target.pt'),
          other = join(dir, 'other.pt');
        await unlink(target);
        await sleep(150);
        await writeFile(other, 'o');
        const fh = await open(target, 'w');
        const end = Date.now() + 2300; // past the batch deadline (2000 ms with these settings)
        while (Date.now() < end) {
          await fh.write('chunk');
          await sleep(60);
        }
        await fh.close();
        assert.deepEqual(changes(), [{ added: [other], changed: [], removed: [] }]);
        await waitFor('the target', () => changes().length >= 2);
        await sleep(200);
        assert.deepEqual(changes().slice(1), [{ added: [], changed: [target], removed: [] }]);
      },
      async (dir) => writeFile(join(dir, 'target.pt'), 'old'),
    );
  });

  it('reports nothing for a file added and removed within one batch', async () => {
    await withWatcher({ debounceMs: 150, settleMs: 300 }, async ({ dir, changes }) => {
      const p = join(dir, 'brief.pt');
      await writeFile(p, 'x');
      await sleep(50);
      await unlink(p);
      await writeFile(join(dir, 'marker.pt'), 'm');
      await waitFor('the marker', () => changes().length >= 1);
      await sleep(300);
      assert.deepEqual(all(changes()), { added: [join(dir, 'marker.pt')], changed: [], removed: [] });
    });
  });

  it('ignores excluded folders (not even watched), dot paths, .lora-sync, node_modules and non-matching files', async () => {
    await withWatcher(
      { exclude: ['**/runs/**', 'scratch'] },
      async ({ dir, w, changes }) => {
        const watchedDirs = Object.keys(w._watcherForTests()!.getWatched());
        for (const d of ['runs', 'scratch', 'node_modules', '.git', '.lora-sync', '.hidden']) {
          assert.ok(!watchedDirs.includes(join(dir, d)), `${d} is watched`);
        }
        assert.ok(watchedDirs.includes(join(dir, 'keep')), 'a normal folder is not watched');
        const noise = [
          'runs/x.pt',
          'scratch/y.pt',
          'keep/deep/runs/z.pt',
          'node_modules/m.pt',
          'keep/node_modules/n.pt',
          '.git/g.pt',
          '.lora-sync/backups/b.pt',
          '.hidden/h.pt',
          'keep/.dot.pt',
          '.LoRA_A.pt.lora-sync-tmp-1-abcd',
          'notes.txt',
          'keep/w.ptx',
        ];
        for (const rel of noise) {
          await mkdir(join(dir, rel, '..'), { recursive: true });
          await writeFile(join(dir, rel), 'noise');
        }
        const sentinel = join(dir, 'keep', 'sentinel.pt');
        await sleep(100);
        await writeFile(sentinel, 's');
        await waitFor('the sentinel', () => changes().some((c) => c.added.includes(sentinel)));
        await sleep(400);
        assert.deepEqual(all(changes()), { added: [sentinel], changed: [], removed: [] });
        // non-matching files are not watched either (only matching ones are tracked)
        const tracked = w._watcherForTests()!.getWatched();
        assert.deepEqual(
          tracked[dir]!.filter((n) => n.includes('.')),
          [],
        );
        assert.deepEqual(
          tracked[join(dir, 'keep')]!.filter((n) => n.includes('.')),
          ['sentinel.pt'],
        );
      },
      async (dir) => {
        for (const d of ['runs', 'scratch', 'node_modules', '.git', '.lora-sync', '.hidden', 'keep'])
          await mkdir(join(dir, d));
      },
    );
  });

  it('stops reporting after close()', async () => {
    await withWatcher({}, async ({ dir, w, events }) => {
      await writeFile(join(dir, 'before.pt'), 'x');
      await sleep(30);
      await w.close(); // closes while that file is still settling
      await writeFile(join(dir, 'after.pt'), 'y');
      await writeFile(join(dir, 'before.pt'), 'xx');
      await sleep(600);
      assert.deepEqual(events, [{ kind: 'ready' }]);
    });
  });
});

describe('watch errors', () => {
  const errno = (code: string, msg: string) => Object.assign(new Error(msg), { code });

  it('classifies ENOSPC as the watch limit, with the sysctl to raise it', () => {
    const c = classifyWatchError(
      errno('ENOSPC', "ENOSPC: System limit for number of file watchers reached, watch '/w'"),
    );
    assert.equal(c.code, 'WATCH_LIMIT');
    assert.match(c.message, /System limit for number of file watchers/);
    assert.match(c.advice, /sudo sysctl fs\.inotify\.max_user_watches=\d+/);
  });

  it('classifies EMFILE / ENFILE as too many files, with ulimit advice', () => {
    for (const code of ['EMFILE', 'ENFILE']) {
      const c = classifyWatchError(errno(code, `${code}: too many open files, watch`));
      assert.equal(c.code, 'TOO_MANY_FILES');
      assert.match(c.advice, /ulimit -n/);
      assert.match(c.advice, /exclude/);
    }
  });

  it('classifies anything else (and non-errors) as OTHER', () => {
    assert.equal(classifyWatchError(errno('EACCES', 'permission denied')).code, 'OTHER');
    assert.equal(classifyWatchError(new Error('boom')).code, 'OTHER');
    assert.deepEqual(classifyWatchError('weird'), {
      code: 'OTHER',
      message: 'weird',
      advice: classifyWatchError('x').advice,
    });
    assert.equal(classifyWatchError(undefined).code, 'OTHER');
  });

  it('an ENOSPC error from chokidar sets degraded and is reported once, after the switch to polling; other errors do not degrade', async () => {
    await withWatcher({}, async ({ w, events }) => {
      const fsw = w._watcherForTests()!;
      assert.equal(w.degraded, false);
      fsw.emit('error', errno('EACCES', 'EACCES: permission denied, watch'));
      assert.equal(w.degraded, false);
      fsw.emit('error', errno('ENOSPC', 'ENOSPC: System limit for number of file watchers reached'));
      assert.equal(w.degraded, true);
      await waitFor('the fallback', () => events.filter((e) => e.kind === 'error').length === 2);
      // More folders failing (even the polling watcher, or another limit) say nothing more.
      w._watcherForTests()!.emit('error', errno('ENOSPC', 'ENOSPC: System limit for number of file watchers reached'));
      w._watcherForTests()!.emit('error', errno('EMFILE', 'EMFILE: too many open files, watch'));
      await sleep(300);
      const errs = events.filter((e) => e.kind === 'error');
      assert.deepEqual(
        errs.map((e) => e.kind === 'error' && [e.code, e.polling ?? false]),
        [
          ['OTHER', false],
          ['WATCH_LIMIT', true],
        ],
      );
      assert.equal(w.usesPolling, true);
      assert.notEqual(w._watcherForTests(), fsw, 'the inotify watcher was replaced');
    });
  });

  // Regression (soak suite, issue 15): after ENOSPC the watcher only set `degraded` and kept the
  // inotify watcher that had missed folders, so changes there waited for the 30 s reconcile.
  it('after a watch limit, changes anywhere under the root are found by polling', async () => {
    await withWatcher(
      {},
      async ({ w, dir, events, changes }) => {
        w._watcherForTests()!.emit(
          'error',
          errno('ENOSPC', 'ENOSPC: System limit for number of file watchers reached'),
        );
        await waitFor('the fallback', () => w.usesPolling && events.some((e) => e.kind === 'error'));
        await writeFile(join(dir, 'a', 'b', 'deep.pt'), 'new');
        await writeFile(join(dir, 'top.pt'), 'changed');
        await waitFor('both changes', () => all(changes()).added.length + all(changes()).changed.length >= 2, 10000);
        assert.deepEqual(all(changes()), {
          added: [join(dir, 'a', 'b', 'deep.pt')],
          changed: [join(dir, 'top.pt')],
          removed: [],
        });
      },
      async (dir) => {
        await mkdir(join(dir, 'a', 'b'), { recursive: true });
        await writeFile(join(dir, 'top.pt'), 'old');
      },
    );
  });

  it('LORA_SYNC_WATCH_LIMIT (the test seam) makes a fresh watcher fall back to polling once', async () => {
    process.env.LORA_SYNC_WATCH_LIMIT = 'ENOSPC';
    try {
      await withWatcher({}, async ({ w, events }) => {
        await waitFor('the fallback', () => events.some((e) => e.kind === 'error'));
        assert.equal(w.usesPolling, true);
        const e = events.find((x) => x.kind === 'error');
        assert.ok(e?.kind === 'error' && e.code === 'WATCH_LIMIT' && e.polling);
      });
    } finally {
      delete process.env.LORA_SYNC_WATCH_LIMIT;
    }
  });
});
