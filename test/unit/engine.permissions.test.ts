/**
 * A copy whose folder the user cannot write fails alone: the built CLI runs as `nobody` (the tests
 * run as root, and root ignores permission bits), one copy folder belongs to root with mode 755, so
 * the temporary file beside that copy cannot be created. That copy is reported failed with a
 * permission reason and keeps its bytes; every other copy that needed a sync got it.
 */
import { walk, sha256File, ensureBuilt } from '../support/files';
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { chmod, chown, copyFile, cp, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { TEMP_MARK } from '../../server/src/io/atomicWrite';

const REPO = join(__dirname, '..', '..');
const FIX = join(REPO, 'test', 'fixtures', 'workspace');
const LOCKED = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';

interface Expected { path: string; role: string | null; expect: string; sync_blocked?: string }

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
  if (has('setpriv')) return { argv: (cmd) => ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', ...cmd], uid, gid };
  return 'neither runuser nor setpriv is installed';
}



async function chownTree(p: string, uid: number, gid: number): Promise<void> {
  await chown(p, uid, gid);
  if (!statSync(p).isDirectory()) return;
  for (const d of await readdir(p)) await chownTree(join(p, d), uid, gid);
}

const sha256 = sha256File;

describe('engine: a copy that cannot be written fails alone (CLI as nobody)', function () {
  this.timeout(60000);
  let tmp: string;
  let root: string;
  let cli: string;
  let runner: Exclude<ReturnType<typeof asNobody>, string>;
  /** NFC relative path (as the engine reports it) -> path on disk (one folder is spelled NFD). */
  const onDisk = new Map<string, string>();
  const expected: Expected[] = (JSON.parse(readFileSync(join(FIX, 'expected.json'), 'utf8')) as { files: Expected[] }).files;

  before(async function () {
    const r = asNobody();
    if (typeof r === 'string') {
      console.log(`      skipped: ${r}`);
      this.skip();
    }
    runner = r;
    ensureBuilt();
    tmp = await mkdtemp(join(tmpdir(), 'lora-perm-'));
    // nobody must be able to reach the workspace: our folder (mkdtemp makes it 0700) and the temp
    // folders above it opened to others; above the system temp folder we only check.
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
    for (const rel of await walk(root)) onDisk.set(rel.normalize('NFC'), rel);
    await chownTree(root, runner.uid, runner.gid);
    const lockedDir = dirname(join(root, onDisk.get(LOCKED)!));
    await chown(lockedDir, 0, 0);
    await chmod(lockedDir, 0o755);
    // The bundle is self-contained: if nobody cannot read dist/, run a copy from our folder.
    cli = join(REPO, 'dist', 'cli.js');
    if (nobodyRun('test', '-r', cli).status !== 0) {
      cli = join(tmp, 'cli.js');
      await copyFile(join(REPO, 'dist', 'cli.js'), cli);
      await chmod(cli, 0o644);
    }
  });
  after(() => tmp && rm(tmp, { recursive: true, force: true }));

  function nobodyRun(...cmd: string[]) {
    const argv = runner.argv(cmd);
    return spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', cwd: tmp });
  }
  function cliAsNobody(...args: string[]) {
    const r = nobodyRun(process.execPath, cli, ...args);
    return { code: r.status, out: r.stdout, err: r.stderr };
  }

  it('the locked copy fails with a permission reason, keeps its bytes, leaves no temp file; the others sync', async () => {
    const lockedAbs = join(root, onDisk.get(LOCKED)!);
    const before = new Map<string, string>();
    for (const [nfc, rel] of onDisk) before.set(nfc, await sha256(join(root, rel)));
    // Root ignores the mode bits, so prove the folder really is closed to nobody before relying on it.
    assert.notEqual(nobodyRun('touch', join(dirname(lockedAbs), '.probe')).status, 0, 'nobody can write the locked folder');
    assert.equal(nobodyRun('touch', join(root, '.probe')).status, 0, 'nobody cannot write the workspace root');
    await rm(join(root, '.probe'));

    const r = cliAsNobody('sync', '--all', '--root', root, '--json');
    assert.equal(r.code, 1, `exit code ${r.code}\n${r.err}`);
    const { result } = JSON.parse(r.out) as { result: { failed: number; loras: Array<{ copies: Array<{ path: string; outcome: string; reason: string }> }> } };
    const outcome = new Map(result.loras.flatMap((l) => l.copies.map((c) => [c.path, c] as const)));
    const locked = outcome.get(LOCKED);
    assert.ok(locked, `${LOCKED} is not in the result`);
    assert.equal(locked.outcome, 'failed', JSON.stringify(locked));
    assert.match(locked.reason, /permission/i);
    assert.equal(result.failed, 1, 'only the locked copy may fail');

    // Never written: same bytes, and no temporary file beside it (or anywhere).
    assert.equal(await sha256(lockedAbs), before.get(LOCKED));
    assert.deepEqual((await readdir(dirname(lockedAbs))).filter((n) => n.includes(TEMP_MARK)), []);
    assert.deepEqual((await walk(root)).filter((p) => p.includes(TEMP_MARK)), []);

    // Every other copy that needed a sync (and is not blocked) got it.
    const todo = expected.filter((e) => (e.expect === 'STALE' || e.expect === 'METADATA_DRIFT') && !e.sync_blocked && e.path !== LOCKED);
    assert.ok(todo.length >= 3, 'the fixture should hold several copies to sync');
    for (const e of todo) {
      assert.equal(outcome.get(e.path)?.outcome, 'synced', `${e.path}: ${JSON.stringify(outcome.get(e.path))}`);
      assert.notEqual(await sha256(join(root, onDisk.get(e.path)!)), before.get(e.path), `${e.path} was not rewritten`);
    }
    const st = cliAsNobody('status', '--json', '--root', root);
    const status = new Map((JSON.parse(st.out) as { files: Array<{ path: string; status: string }> }).files.map((f) => [f.path, f.status]));
    for (const e of todo) assert.equal(status.get(e.path), 'IN_SYNC', e.path);
    assert.equal(status.get(LOCKED), 'STALE', 'the locked copy is still STALE');
    // Nothing else was touched.
    const written = new Set(todo.map((e) => e.path));
    for (const [nfc, rel] of onDisk) {
      if (written.has(nfc)) continue;
      assert.equal(await sha256(join(root, rel)), before.get(nfc), `${nfc} changed`);
    }
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
    const shaBefore = await sha256(abs);
    const r = spawnSync(process.execPath, [cli, 'sync', '--all', '--root', dir, '--json'], { encoding: 'utf8' });
    const { result } = JSON.parse(r.stdout) as { result: { loras: Array<{ copies: Array<{ path: string; outcome: string }> }> } };
    assert.equal(result.loras.flatMap((l) => l.copies).find((c) => c.path === rel)?.outcome, 'synced');
    assert.notEqual(await sha256(abs), shaBefore, 'not rewritten');
    const st = statSync(abs);
    assert.deepEqual({ uid: st.uid, gid: st.gid, mode: (st.mode & 0o777).toString(8) }, { uid: runner.uid, gid: runner.gid, mode: '664' }, 'owner, group or mode of the copy changed');
  });
});
