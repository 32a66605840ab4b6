/**
 * Resource faults, on copies of the torch-written fixture workspace, through the built CLI:
 *
 * - no space left while a copy is written: for real (a small tmpfs mounted on the copy's folder,
 *   filled up; skipped with the reason where mounting is not permitted) and injected at the
 *   engine's own file-system steps (io/faults.ts), so CI always covers it; also no space for the
 *   engine's state (history, locks, cache);
 * - failed flush (EIO), read-only file system (a read-only bind mount, and injected), permission
 *   denied (the CLI run as `nobody`, and injected), a copy nobody may read.
 *
 * Each time: the target copy keeps its bytes, no temporary file is left, the failure is reported
 * for that copy in the result and the history, and the other copies are synced.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { chmod, chown, copyFile, cp, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { History } from '../../server/src/engine/history';
import { copyFixtureWorkspace, sha256File } from '../support/files';
import { addFigure } from './figures';
import { canMount, isTemp, listTree, mountTmpfs, privateCli, REPO, runCli, tempDir, umount } from './support';

const SEC = 'resource faults';
const FIX = join(REPO, 'test', 'fixtures', 'workspace');
const STALE_A = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';
const OTHERS = [
  '🏛️_NEWTON_HALL/LoRA_A_7a8b9c.pt',
  '💎_PERFECT_HYBRID_HALL/LoRA_B_b0b1b2.pt',
  '💎_PERFECT_HYBRID_HALL/LoRA_I_0a1b2c.pt',
];

interface CopyOutcome {
  path: string;
  outcome: string;
  reason: string;
}
interface SyncJson {
  result: {
    failed: number;
    synced: number;
    historyError?: string;
    loras: Array<{ id: string; copies: CopyOutcome[] }>;
  };
}

const outcome = (j: SyncJson, path: string) => j.result.loras.flatMap((l) => l.copies).find((c) => c.path === path)!;

let cli: string;
let scratch: string;

/** The checks every fault shares: the copy untouched and reported, no temp file, the others synced, the history says so. */
async function expectCopyFailed(dir: string, j: SyncJson, before: string, reason: RegExp): Promise<void> {
  const c = outcome(j, STALE_A);
  assert.equal(c.outcome, 'failed', JSON.stringify(c));
  assert.match(c.reason, reason);
  assert.equal(await sha256File(join(dir, STALE_A)), before, 'the copy was touched');
  assert.deepEqual((await listTree(dir)).filter(isTemp), [], 'a temporary file was left');
  for (const p of OTHERS) assert.equal(outcome(j, p).outcome, 'synced', `${p}: ${JSON.stringify(outcome(j, p))}`);
  const { events } = await new History(dir).read();
  const ev = events.find((e) => e.event === 'SYNC' && e.lora_id === 'lora_a')!;
  assert.equal(ev.failed_copies, 1);
  assert.deepEqual(ev.files, [STALE_A]);
  assert.match(String((ev.details as { failures: Record<string, string> }).failures[STALE_A]), reason);
}

async function syncJson(dir: string, faults?: string): Promise<{ code: number | null; j: SyncJson }> {
  const r = await runCli(cli, ['sync', '--all', '--json', '--root', dir], {
    env: faults ? { LORA_SYNC_FAULTS: faults } : {},
  });
  assert.ok(r.out, r.err);
  return { code: r.code, j: JSON.parse(r.out) as SyncJson };
}

describe('resource faults', () => {
  before(async () => {
    scratch = await tempDir('lora-res-');
    cli = await privateCli(scratch);
  });
  after(() => rm(scratch, { recursive: true, force: true }));

  describe("resource faults: injected at the engine's file-system steps (always run)", function () {
    this.timeout(60_000);
    let dir: string;
    beforeEach(async () => {
      dir = await copyFixtureWorkspace('lora-inject-');
    });
    afterEach(() => rm(dir, { recursive: true, force: true }));

    const cases: Array<[string, string, RegExp]> = [
      ['no space left while writing the copy', 'ENOSPC@write:data~LoRA_A_4d5e6f', /no space left on the device/],
      ['the flush of the new file fails (EIO)', 'EIO@write:synced~LoRA_A_4d5e6f', /EIO/],
      ['a read-only file system', 'EROFS@write:create~LoRA_A_4d5e6f', /read-only file system/],
      ['permission denied', 'EACCES@write:create~LoRA_A_4d5e6f', /permission denied/],
    ];
    for (const [what, rule, reason] of cases) {
      it(`${what}: that copy untouched and reported, the others synced`, async () => {
        const before = await sha256File(join(dir, STALE_A));
        const { code, j } = await syncJson(dir, rule);
        assert.equal(code, 1);
        await expectCopyFailed(dir, j, before, reason);
        // Once the fault is gone, the next run syncs it.
        const again = await syncJson(dir);
        assert.equal(outcome(again.j, STALE_A).outcome, 'synced');
        addFigure(SEC, 'faults injected', 1);
      });
    }

    it('no space for the history: every copy written, the failure reported, the log intact; the next run appends', async () => {
      await runCli(cli, ['verify', '--root', dir]); // some history first
      const h = new History(dir);
      const before = (await h.read()).events.length;
      const { code, j } = await syncJson(dir, 'ENOSPC@history:write');
      assert.equal(code, 1);
      assert.match(j.result.historyError ?? '', /no space left/);
      for (const p of [STALE_A, ...OTHERS]) assert.equal(outcome(j, p).outcome, 'synced');
      const r = await h.read();
      assert.deepEqual([r.events.length, r.skippedLines], [before, 0], 'the log lost or gained lines');
      await runCli(cli, ['verify', '--root', dir]);
      assert.equal((await h.read()).events.length, before + 9);
      addFigure(SEC, 'faults injected', 1);
    });

    it('no space for the index cache: the sync is unaffected, no temporary file is left, the next run rebuilds it', async () => {
      const { code, j } = await syncJson(dir, 'ENOSPC@write:data~index.jsonl');
      assert.equal(code, 0);
      assert.equal(j.result.synced, 4);
      assert.deepEqual((await listTree(dir)).filter(isTemp), []);
      const st = await runCli(cli, ['status', '--json', '--root', dir]);
      const stale = (JSON.parse(st.out) as { files: Array<{ status: string }> }).files.filter(
        (f) => f.status === 'STALE',
      ).length;
      assert.equal(stale, 2, 'only the two blocked copies are still STALE');
      addFigure(SEC, 'faults injected', 1);
    });
  });

  describe('resource faults: a real full file system (tmpfs)', function () {
    this.timeout(60_000);
    let dir: string;
    const mounts: string[] = [];
    before(function () {
      const ok = canMount(scratch);
      if (ok !== true) {
        console.log(`      skipped: ${ok} (the injected variants above still cover it)`);
        this.skip();
      }
    });
    beforeEach(async () => {
      dir = await copyFixtureWorkspace('lora-enospc-');
    });
    afterEach(async () => {
      while (mounts.length) umount(mounts.pop()!);
      await rm(dir, { recursive: true, force: true });
    });

    /** Mounts a small tmpfs over `folder` with its files moved in, then fills what is left. */
    async function fullTmpfs(folder: string): Promise<void> {
      const aside = `${folder}.aside`;
      await cp(folder, aside, { recursive: true });
      mountTmpfs(folder, '48k');
      mounts.push(folder);
      await cp(aside, folder, { recursive: true });
      await rm(aside, { recursive: true });
      // Fill it: a file of 1 KiB chunks until the device says no.
      const r = spawnSync('sh', ['-c', `dd if=/dev/zero of="${join(folder, 'filler.bin')}" bs=1024 2>/dev/null; true`]);
      assert.equal(r.status, 0);
      assert.notEqual(
        spawnSync('sh', ['-c', `head -c 4096 /dev/zero > "${join(folder, 'probe.bin')}"`]).status,
        0,
        'the tmpfs is not full',
      );
      await rm(join(folder, 'probe.bin'), { force: true });
    }

    it("no space left in the copy's folder: that copy untouched and reported, temp removed, the others synced; space freed, the next run syncs it", async () => {
      const folder = dirname(join(dir, STALE_A));
      await fullTmpfs(folder);
      const before = await sha256File(join(dir, STALE_A));
      const { code, j } = await syncJson(dir);
      assert.equal(code, 1);
      await expectCopyFailed(dir, j, before, /no space left on the device/);
      await rm(join(folder, 'filler.bin'));
      const again = await syncJson(dir);
      assert.equal(outcome(again.j, STALE_A).outcome, 'synced');
      addFigure(SEC, 'real faults', 1);
    });

    it("no space for the engine's state (.lora-sync full): nothing half-written, every copy reported; space freed, the next run syncs", async () => {
      const state = join(dir, '.lora-sync');
      await mkdir(state);
      await runCli(cli, ['verify', '--root', dir]); // a history to keep
      const h = new History(dir);
      const events = (await h.read()).events.length;
      await fullTmpfs(state);
      const shas = await Promise.all([STALE_A, ...OTHERS].map((p) => sha256File(join(dir, p))));
      const { code, j } = await syncJson(dir);
      assert.equal(code, 1);
      for (const [i, p] of [STALE_A, ...OTHERS].entries()) {
        const c = outcome(j, p);
        assert.equal(c.outcome, 'skipped', JSON.stringify(c));
        assert.match(c.reason, /lock .* cannot be taken: no space left/);
        assert.equal(await sha256File(join(dir, p)), shas[i]);
      }
      assert.deepEqual((await listTree(dir)).filter(isTemp), []);
      const r = await h.read();
      assert.deepEqual([r.events.length, r.skippedLines], [events, 0]);
      await rm(join(state, 'filler.bin'));
      const again = await syncJson(dir);
      assert.equal(again.code, 0);
      assert.equal(again.j.result.synced, 4);
      addFigure(SEC, 'real faults', 1);
    });

    it('a read-only folder (read-only bind mount): that copy reported, the others synced', async () => {
      const folder = dirname(join(dir, STALE_A));
      execFileSync('mount', ['--bind', folder, folder]);
      mounts.push(folder);
      execFileSync('mount', ['-o', 'remount,bind,ro', folder]);
      const before = await sha256File(join(dir, STALE_A));
      const { code, j } = await syncJson(dir);
      assert.equal(code, 1);
      await expectCopyFailed(dir, j, before, /read-only file system/);
      addFigure(SEC, 'real faults', 1);
    });
  });

  /** How to run a command as `nobody`, or why we cannot. */
  function asNobody(): { argv: (cmd: string[]) => string[]; uid: number; gid: number } | string {
    if (process.getuid?.() !== 0) return 'not running as root: cannot switch to nobody';
    let uid: number;
    let gid: number;
    try {
      uid = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());
      gid = Number(execFileSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).trim());
    } catch {
      return 'user nobody does not exist';
    }
    const has = (p: string) => spawnSync(p, ['--version'], { stdio: 'ignore' }).status === 0;
    if (has('runuser')) return { argv: (cmd) => ['runuser', '-u', 'nobody', '--', ...cmd], uid, gid };
    if (has('setpriv'))
      return { argv: (cmd) => ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', ...cmd], uid, gid };
    return 'neither runuser nor setpriv is installed';
  }

  async function chownTree(p: string, uid: number, gid: number): Promise<void> {
    await chown(p, uid, gid);
    if (!statSync(p).isDirectory()) return;
    for (const d of await readdir(p)) await chownTree(join(p, d), uid, gid);
  }

  /**
   * Real permission bits: the CLI runs as `nobody` (the tests run as root, and root ignores them). One
   * copy folder belongs to root with mode 755 (the temporary file beside that copy cannot be created),
   * one copy is root's with mode 600 (it cannot even be read).
   */
  describe('resource faults: permission denied (the CLI as nobody)', function () {
    this.timeout(60_000);
    let tmp: string;
    let root: string;
    let nobodyCli: string;
    let runner: Exclude<ReturnType<typeof asNobody>, string>;
    const UNREADABLE = '💎_PERFECT_HYBRID_HALL/LoRA_I_0a1b2c.pt';
    /** NFC relative path (as the engine reports it) -> path on disk (one folder is spelled NFD). */
    const onDisk = new Map<string, string>();
    interface Expected {
      path: string;
      role: string | null;
      expect: string;
      sync_blocked?: string;
    }
    const expected: Expected[] = (JSON.parse(readFileSync(join(FIX, 'expected.json'), 'utf8')) as { files: Expected[] })
      .files;

    before(async function () {
      const r = asNobody();
      if (typeof r === 'string') {
        console.log(`      skipped: ${r}`);
        return this.skip();
      }
      runner = r;
      tmp = await tempDir('lora-perm-');
      // nobody must be able to reach the workspace: our folder and the temp folders above it opened to others.
      const top = dirname(tmpdir());
      for (let d = tmp; d !== dirname(d); d = dirname(d)) {
        if ((statSync(d).mode & 0o005) === 0o005) continue;
        if (d === top || !d.startsWith(tmpdir())) {
          console.log(`      skipped: ${d} is not traversable by nobody`);
          return this.skip();
        }
        await chmod(d, statSync(d).mode | 0o005);
      }
      root = join(tmp, 'ws');
      await cp(FIX, root, { recursive: true });
      for (const rel of await listTree(root)) onDisk.set(rel.normalize('NFC'), rel);
      await chownTree(root, runner.uid, runner.gid);
      const lockedDir = dirname(join(root, onDisk.get(STALE_A)!));
      await chown(lockedDir, 0, 0);
      await chmod(lockedDir, 0o755);
      await chown(join(root, onDisk.get(UNREADABLE)!), 0, 0);
      await chmod(join(root, onDisk.get(UNREADABLE)!), 0o600);
      nobodyCli = join(tmp, 'cli.js');
      await copyFile(cli, nobodyCli);
      await chmod(nobodyCli, 0o644);
    });
    after(() => tmp && rm(tmp, { recursive: true, force: true }));

    function nobodyRun(...cmd: string[]) {
      const argv = runner.argv(cmd);
      return spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', cwd: tmp });
    }

    it('a copy in a folder nobody may write fails alone; a copy nobody may read is reported; the others sync', async () => {
      const lockedAbs = join(root, onDisk.get(STALE_A)!);
      const before = new Map<string, string>();
      for (const [nfc, rel] of onDisk) before.set(nfc, await sha256File(join(root, rel)));
      // Root ignores the mode bits, so prove the folder really is closed to nobody before relying on it.
      assert.notEqual(
        nobodyRun('touch', join(dirname(lockedAbs), '.probe')).status,
        0,
        'nobody can write the locked folder',
      );
      assert.equal(nobodyRun('touch', join(root, '.probe')).status, 0, 'nobody cannot write the workspace root');
      await rm(join(root, '.probe'));

      const r = nobodyRun(process.execPath, nobodyCli, 'sync', '--all', '--root', root, '--json');
      assert.equal(r.status, 1, `exit code ${r.status}\n${r.stderr}`);
      const j = JSON.parse(r.stdout) as SyncJson;
      const locked = outcome(j, STALE_A);
      assert.equal(locked.outcome, 'failed', JSON.stringify(locked));
      assert.match(locked.reason, /permission denied/i);
      assert.equal(j.result.failed, 1, 'only the locked copy may fail');
      const unreadable = outcome(j, UNREADABLE);
      assert.equal(unreadable.outcome, 'refused', JSON.stringify(unreadable));

      assert.equal(await sha256File(lockedAbs), before.get(STALE_A));
      assert.deepEqual((await listTree(root)).filter(isTemp), []);
      const todo = expected.filter(
        (e) =>
          (e.expect === 'STALE' || e.expect === 'METADATA_DRIFT') &&
          !e.sync_blocked &&
          e.path !== STALE_A &&
          e.path !== UNREADABLE,
      );
      assert.ok(todo.length >= 2);
      for (const e of todo) {
        assert.equal(outcome(j, e.path)?.outcome, 'synced', `${e.path}: ${JSON.stringify(outcome(j, e.path))}`);
        assert.notEqual(
          await sha256File(join(root, onDisk.get(e.path)!)),
          before.get(e.path),
          `${e.path} was not rewritten`,
        );
      }
      const st = nobodyRun(process.execPath, nobodyCli, 'status', '--json', '--root', root);
      const files = new Map(
        (
          JSON.parse(st.stdout) as { files: Array<{ path: string; status: string; issues: Array<{ detail: string }> }> }
        ).files.map((f) => [f.path, f]),
      );
      for (const e of todo) assert.equal(files.get(e.path)!.status, 'IN_SYNC', e.path);
      assert.equal(files.get(STALE_A)!.status, 'STALE', 'the locked copy is still STALE');
      assert.equal(files.get(UNREADABLE)!.status, 'CORRUPT');
      assert.match(files.get(UNREADABLE)!.issues[0].detail, /EACCES|permission denied/i);
      const written = new Set(todo.map((e) => e.path));
      for (const [nfc, rel] of onDisk)
        if (!written.has(nfc)) assert.equal(await sha256File(join(root, rel)), before.get(nfc), `${nfc} changed`);
      addFigure(SEC, 'real faults', 2);
    });

    // A sync replaces the file (temp file + rename): the new inode must keep what the old one had,
    // or a sync run with sudo leaves copies the user can no longer write, and umask eats group bits.
    it('a synced copy keeps its owner, group and mode (synced by root, the copy belongs to nobody, mode 664)', async () => {
      const dir = join(tmp, 'owners');
      await cp(FIX, dir, { recursive: true });
      const rel = '💎_PERFECT_HYBRID_HALL/LoRA_B_b0b1b2.pt'; // STALE
      const abs = join(dir, rel);
      await chown(abs, runner.uid, runner.gid);
      await chmod(abs, 0o664);
      const shaBefore = await sha256File(abs);
      const r = await syncJson(dir);
      assert.equal(outcome(r.j, rel).outcome, 'synced');
      assert.notEqual(await sha256File(abs), shaBefore, 'not rewritten');
      const st = statSync(abs);
      assert.deepEqual(
        { uid: st.uid, gid: st.gid, mode: (st.mode & 0o777).toString(8) },
        { uid: runner.uid, gid: runner.gid, mode: '664' },
        'owner, group or mode of the copy changed',
      );
    });
  });

  // A folder named like a copy is not a copy; nothing breaks on it.
  describe('resource faults: odd entries', () => {
    it('a directory named like a copy is left alone and the sync completes', async () => {
      const dir = await copyFixtureWorkspace('lora-odd-');
      try {
        await mkdir(join(dir, '💎_PERFECT_HYBRID_HALL', 'LoRA_A_ffffff.pt'));
        await writeFile(join(dir, '💎_PERFECT_HYBRID_HALL', 'LoRA_A_ffffff.pt', 'inside.pt'), 'not a checkpoint');
        const { code, j } = await syncJson(dir);
        assert.equal(code, 0);
        assert.equal(j.result.synced, 4);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
});
