/**
 * Two writers, one workspace: per-LoRA locks under .lora-sync/locks keep two processes from writing
 * the same LoRA together; a lock left by a dead process is taken over; two real CLI processes
 * syncing the same torch-written workspace at once leave every file whole and every STALE copy synced.
 */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Workspace } from '../../server/src/engine/workspace';
import { lockPath } from '../../server/src/engine/loraLock';
import { ensureBuilt, walk, copyFixtureWorkspace } from '../support/files';

const STALE_A = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';

describe('engine: two writers', function () {
  this.timeout(60000);
  let dir: string;
  beforeEach(async () => {
    dir = await copyFixtureWorkspace('lora-lock-');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  async function holdLock(pid: number) {
    await mkdir(join(dir, '.lora-sync', 'locks'), { recursive: true });
    await writeFile(lockPath(dir, 'lora_a'), JSON.stringify({ pid, host: hostname(), since: '2026-01-01T00:00:00Z', lora: 'lora_a' }));
  }

  it('a LoRA locked by a live process is not written; the others are', async () => {
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    try {
      await holdLock(holder.pid!);
      const before = await readFile(join(dir, STALE_A));
      const ws = await Workspace.open(dir);
      await ws.scan();
      const r = await ws.sync(ws.plan(), { reason: 'MANUAL' });
      const a = r.loras.find((l) => l.id === 'lora_a')!;
      const c = a.copies.find((x) => x.path === STALE_A)!;
      assert.equal(c.outcome, 'skipped');
      assert.match(c.reason, new RegExp(`another LoRA Sync process \\(pid ${holder.pid}`));
      assert.ok((await readFile(join(dir, STALE_A))).equals(before));
      assert.equal(r.loras.find((l) => l.id === 'lora_b')!.copies.find((x) => x.path === '💎_PERFECT_HYBRID_HALL/LoRA_B_b0b1b2.pt')!.outcome, 'synced');
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('a lock left by a dead process is taken over, and released after the sync', async () => {
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    await holdLock(dead);
    const ws = await Workspace.open(dir);
    await ws.scan();
    const r = await ws.sync(ws.plan({ loras: ['lora_a'] }), { reason: 'MANUAL' });
    assert.equal(r.loras[0].copies.find((x) => x.path === STALE_A)!.outcome, 'synced');
    assert.deepEqual((await walk(join(dir, '.lora-sync', 'locks'))), [], 'no lock left behind');
  });

  it('two CLI processes syncing the same workspace at once: every file whole, every STALE copy synced', async () => {
    const cli = ensureBuilt();
    const run = () => new Promise<number>((resolve) => {
      const p = spawn(process.execPath, [cli, 'sync', '--all', '--root', dir], { stdio: 'ignore' });
      p.on('exit', (code) => resolve(code ?? -1));
    });
    const codes = await Promise.all([run(), run()]);
    assert.ok(codes.every((c) => c === 0 || c === 1), `exit codes ${codes}`);
    const files = await walk(dir);
    assert.deepEqual(files.filter((f) => f.includes('.lora-sync-tmp-')), [], 'no temporary files');
    assert.deepEqual(files.filter((f) => f.startsWith('.lora-sync/locks/')), [], 'no locks left');
    const ws = await Workspace.open(dir);
    await ws.scan();
    const r = await ws.report();
    // Nothing the two could write is left STALE or drifted, and nothing became corrupt.
    const blocked = new Set(['🏛️_NEWTON_HALL/LoRA_D_d0d1d2.pt', 'Manchester_United/🎯_WIN_EXPERTS/LoRA_E_e0e1e2.pt']);
    assert.deepEqual(r.files.filter((f) => (f.status === 'STALE' || f.status === 'METADATA_DRIFT') && !blocked.has(f.path)).map((f) => f.path), []);
    assert.equal(r.stats.by_status.CORRUPT, 2, 'only the two fixture files that were corrupt to begin with');
  });
});
