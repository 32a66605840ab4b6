/**
 * Links are never followed: a copy that is a symbolic link to a file outside the workspace is not
 * tracked and never written through; a folder link that loops back does not hang the scan.
 */
import { strict as assert } from 'node:assert';
import { copyFile, cp, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Workspace } from '../../server/src/engine/workspace';

const FIX = join(__dirname, '..', 'fixtures', 'workspace');

describe('engine: symbolic links', function () {
  this.timeout(30000);
  let dir: string;
  let outside: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lora-link-'));
    outside = await mkdtemp(join(tmpdir(), 'lora-outside-'));
    await cp(FIX, dir, { recursive: true });
    // A stale copy living outside the workspace, linked into a hall folder.
    await copyFile(join(dir, 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt'), join(outside, 'LoRA_A_0f0f0f.pt'));
    await symlink(join(outside, 'LoRA_A_0f0f0f.pt'), join(dir, '💎_PERFECT_HYBRID_HALL/LoRA_A_0f0f0f.pt'));
    // A folder link back to the root: a loop for anything that follows links.
    await symlink(dir, join(dir, 'loop'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  it('scans without following links and never writes through one', async () => {
    const before = await readFile(join(outside, 'LoRA_A_0f0f0f.pt'));
    const ws = await Workspace.open(dir);
    await ws.scan();
    const r = await ws.report();
    assert.ok(!r.files.some((f) => f.path.startsWith('loop/')), 'the loop is not entered');
    assert.ok(!r.files.some((f) => f.path.endsWith('LoRA_A_0f0f0f.pt')), 'the linked copy is not tracked');
    const res = await ws.sync(ws.plan(), { reason: 'MANUAL' });
    assert.ok(res.synced > 0);
    assert.ok((await readFile(join(outside, 'LoRA_A_0f0f0f.pt'))).equals(before), 'the file outside is untouched');
    // and an explicit update of the link path is refused the same way
    assert.deepEqual(await ws.update([join(dir, '💎_PERFECT_HYBRID_HALL/LoRA_A_0f0f0f.pt')]), []);
  });
});
