/**
 * Watchers that run out: when the OS refuses more inotify watches (ENOSPC) the server and
 * `lora-sync watch` switch that root to polling, say so once (log, a notification, the server
 * status), and keep every status right. The limit is the test seam LORA_SYNC_WATCH_LIMIT=ENOSPC:
 * fs.inotify.max_user_watches is not per user namespace on this kernel (writing it inside
 * `unshare -Ur` changed the host's value), and lowering it for real would starve every other
 * process of the user. What proves the switch is real: neither process holds an inotify watch
 * afterwards, and changes are printed without a reconcile before them.
 */
import { strict as assert } from 'node:assert';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSeedWorkspace } from '../../server/src/demo/seedWorkspace';
import { trainerStep } from '../../server/src/demo/trainerStep';
import { CopyMapRequest, type CopyMapResult } from '../../server/src/protocol/messages';
import { setFigure } from '../faults/figures';
import { runCli } from '../faults/support';
import { ensureBuilt } from '../support/files';
import { sleep, until } from '../support/lspServer';
import { killLeftovers, startLiveServer, startWatch, stopLiveServer, stopWatch } from './liveProcs';
import { fdStats } from './procStats';

describe('soak: out of inotify watches (LORA_SYNC_WATCH_LIMIT=ENOSPC)', function () {
  this.timeout(300_000);
  let root = '';
  let dist = '';
  before(async () => {
    dist = await mkdtemp(join(tmpdir(), 'lora-soak-dist-'));
    await cp(join(ensureBuilt(), '..'), dist, { recursive: true });
    root = await mkdtemp(join(tmpdir(), 'lora-soak-limit-'));
  });
  after(async () => {
    killLeftovers();
    await rm(root, { recursive: true, force: true });
    await rm(dist, { recursive: true, force: true });
  });

  it('both processes fall back to polling, say it once, and keep every status right', async () => {
    const seed = await generateSeedWorkspace(root, { loras: 60, copies: 240 });
    // reconcileSeconds is large, but a degraded watcher still reconciles every 30 s: the changes
    // below must be seen by polling, before that.
    await writeFile(
      join(root, 'lora-sync.json'),
      JSON.stringify({ autoSync: 'onSourceChange', reconcileSeconds: 3600 }),
    );
    const env = { LORA_SYNC_WATCH_LIMIT: 'ENOSPC' };
    const cli = join(dist, 'cli.js');
    const [server, watch] = await Promise.all([
      startLiveServer(join(dist, 'server.js'), root, () => undefined, env),
      startWatch(cli, root, env),
    ]);
    try {
      await until('watch: the fallback and its reconcile', 60_000, () => {
        const i = watch.events.findIndex((e) => e.kind === 'watch-error');
        return i >= 0 && watch.events.slice(i).some((e) => e.kind === 'scanned');
      });
      await until('server: the notification', 60_000, () => server.shown.length > 0);
      const fallbackAt = watch.events.length;
      for (const [who, pid] of [
        ['server', server.child.pid!],
        ['watch', watch.child.pid!],
      ] as const)
        assert.equal(fdStats(pid)?.inotifyWatches, 0, `${who} still holds inotify watches`);

      // Changes deep in the tree: a source retrained, a new copy in a new folder, a copy removed.
      const src = seed.files.find((f) => f.role === 'source' && f.expect === 'SOURCE')!;
      const gone = seed.files.find((f) => f.role === 'copy' && f.expect === 'IN_SYNC' && f.lora !== src.lora)!;
      const t0 = Date.now();
      await trainerStep(src.path, { match: 77 });
      await mkdir(join(root, 'Celtic', 'new', 'deeper'), { recursive: true });
      const added = join('Celtic', 'new', 'deeper', 'LoRA_added.pt');
      await cp(gone.path, join(root, added));
      await rm(gone.path);
      const goneRel = gone.path.slice(root.length + 1).normalize('NFC');
      const seen = (p: string) =>
        watch.events
          .slice(fallbackAt)
          .some((e) => e.kind === 'statuses' && (e.changes as Array<{ path: string }>).some((c) => c.path === p));
      await until('watch: the changes, by polling', 25_000, () => seen(added) && seen(goneRel));
      setFigure('watch limit', 'change → watch printed it ms (polling)', Date.now() - t0);
      const between = watch.events.slice(fallbackAt);
      assert.ok(!between.some((e) => e.kind === 'scanned'), 'seen by polling, not by a reconcile');
      const cold = JSON.parse((await runCli(cli, ['status', '--all', '--json', '--root', root])).out) as {
        files: Array<{ path: string; status: string }>;
      };
      // The server runs the same watcher: its copy map comes to equal the cold status without a reconcile.
      let diff: string[] = ['not asked yet'];
      for (const end = Date.now() + 25_000; diff.length && Date.now() < end; await sleep(500)) {
        const m = (await server.conn.sendRequest(CopyMapRequest, {})) as CopyMapResult;
        const got = new Map(m.folders[0]!.files.map((f) => [f.path, f.status as string]));
        diff = cold.files
          .filter((f) => got.get(f.path) !== f.status)
          .map((f) => `${f.path}: ${f.status} / ${got.get(f.path)}`);
        if (got.size !== cold.files.length) diff.push(`${got.size} files served, ${cold.files.length} on disk`);
      }
      assert.deepEqual(diff, []);
      // Said once: one notification, one log line, the status carries it; watch printed it once.
      assert.equal(server.shown.length, 1);
      assert.match(server.shown[0]!.message, /polls this folder/);
      assert.equal(server.logs.filter((l) => /inotify/.test(l.message)).length, 1);
      assert.equal(server.logs.filter((l) => l.type === 1).length, 0, 'a handled limit is a warning, not an error');
      assert.equal(watch.events.filter((e) => e.kind === 'watch-error').length, 1);
      assert.equal(watch.events.find((e) => e.kind === 'watch-error')!.polling, true);
      assert.deepEqual(await stopLiveServer(server), { code: 0, signal: null }, server.stderr());
      assert.deepEqual(await stopWatch(watch), { code: 0, signal: null });
    } finally {
      killLeftovers();
    }
  });
});
