/**
 * A reused pid is not taken for the process that made a lock or a temporary file: makers record their
 * start time in kernel ticks, and a live pid with another start time is another process.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { ownStartTicks, processAlive, processStartTicks } from '../../server/src/io/processIdentity';
import { atomicWrite, isTempFile, tempFileOwner, tempPathFor } from '../../server/src/io/atomicWrite';
import { LockBusy, lockLora, lockPath } from '../../server/src/engine/loraLock';
import { Workspace } from '../../server/src/engine/workspace';

describe('process identity: pid and start time', () => {
  let dir: string;
  let child: ChildProcess;
  let ticks: number;
  before(async function () {
    if (process.platform !== 'linux') this.skip();
    dir = await mkdtemp(join(tmpdir(), 'lora-pid-'));
    // A process whose name holds a space and parentheses, as /proc/<pid>/stat's field 2 may.
    const odd = join(dir, 'a) b (c');
    await copyFile('/bin/sleep', odd);
    child = spawn(odd, ['60'], { stdio: 'ignore' });
    await once(child, 'spawn');
    ticks = processStartTicks(child.pid!)!;
  });
  after(async () => {
    child?.kill();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reads start ticks past a name with spaces and parentheses, and its own', () => {
    assert.ok(Number.isSafeInteger(ticks) && ticks > 0, String(ticks));
    assert.ok(ticks >= ownStartTicks()!, 'the child started after this process');
    assert.equal(processStartTicks(process.pid), ownStartTicks());
    assert.equal(processStartTicks(2 ** 22 + 12345), undefined);
  });

  it('a live pid is the maker only with the same start time; a gone one never', async () => {
    assert.equal(processAlive(child.pid!), true);
    assert.equal(processAlive(child.pid!, ticks), true);
    assert.equal(processAlive(child.pid!, ticks - 1), false, 'same pid, earlier start: the pid was reused');
    const gone = spawn('/bin/true');
    await once(gone, 'exit');
    assert.equal(processAlive(gone.pid!), false);
  });

  it('temporary file names carry pid and start ticks; old names (pid only) still parse', () => {
    const name = tempPathFor('/w/LoRA_A.pt').split('/').pop()!;
    assert.deepEqual(tempFileOwner(name), { pid: process.pid, start: ownStartTicks() });
    assert.deepEqual(tempFileOwner('.LoRA_A.pt.lora-sync-tmp-4242-0badf00d'), { pid: 4242 });
    assert.deepEqual(tempFileOwner('.LoRA_A.pt.lora-sync-tmp-4242-12345678'), { pid: 4242 });
    // Start 0: made where start times are unknown (no /proc): only the pid can be checked.
    assert.deepEqual(tempFileOwner('.LoRA_A.pt.lora-sync-tmp-4242-0-0badf00d'), { pid: 4242 });
  });

  it('a long target name is cut so its temporary name fits in 255 bytes, at a character, still recognised', () => {
    for (const base of [`LoRA_${'ş'.repeat(110)}_abc.pt`, `${'x'.repeat(250)}.pt`, `${'🎯'.repeat(60)}.pt`]) {
      const name = tempPathFor(`/w/${base}`).split('/').pop()!;
      assert.ok(Buffer.byteLength(name) <= 255, `${Buffer.byteLength(name)} bytes`);
      assert.ok(Buffer.byteLength(name) >= 250, 'cut no more than it must');
      assert.ok(!name.includes('\uFFFD') && Buffer.from(name).toString() === name, 'whole characters');
      assert.ok(isTempFile(name));
      assert.deepEqual(tempFileOwner(name), { pid: process.pid, start: ownStartTicks() });
    }
    // A name with room is kept whole.
    assert.match(tempPathFor('/w/LoRA_A.pt'), /\/\.LoRA_A\.pt\.lora-sync-tmp-/);
  });

  it("a sweep removes a temporary file whose pid now belongs to another process, and keeps the live maker's", async () => {
    const ws = join(dir, 'ws');
    await mkdir(ws, { recursive: true });
    const reused = `.x.pt.lora-sync-tmp-${child.pid}-${ticks - 1}-00000001`;
    const live = `.y.pt.lora-sync-tmp-${child.pid}-${ticks}-00000002`;
    const legacy = `.z.pt.lora-sync-tmp-${child.pid}-00000003`;
    for (const n of [reused, live, legacy]) await writeFile(join(ws, n), 'partial');
    const removed = await (await Workspace.open(ws)).removeStaleTempFiles();
    assert.deepEqual(removed, [reused]);
    assert.deepEqual((await readdir(ws)).sort(), [legacy, live].sort());
  });

  // Regression (soak suite, issue 15): a sync writing into a folder that was renamed meanwhile could
  // neither rename nor unlink its temporary file, which then stayed for good: its pid is alive.
  it('a sweep removes our own temporary file once its write has ended, and keeps one being written', async () => {
    const ws = join(dir, 'ws-own');
    await mkdir(ws, { recursive: true });
    const leftover = tempPathFor(join(ws, 'gone.pt')).split('/').pop()!;
    await writeFile(join(ws, leftover), 'partial');
    let during: string[] = [];
    const w = await Workspace.open(ws);
    await atomicWrite(join(ws, 'a.pt'), async (fh) => {
      await fh.writeFile('data');
      during = await w.removeStaleTempFiles();
    });
    assert.deepEqual(during, [leftover], 'the leftover goes, the write in flight stays');
    assert.deepEqual((await readdir(ws)).sort(), ['a.pt']);
  });

  it('a LoRA lock held under a reused pid is taken over; one held by the live maker is not', async () => {
    const ws = join(dir, 'locks');
    await mkdir(join(ws, '.lora-sync', 'locks'), { recursive: true });
    const owner = { pid: child.pid!, host: hostname(), since: '2026-01-01T00:00:00.000Z', lora: 'lora_x' };
    await writeFile(lockPath(ws, 'lora_x'), JSON.stringify({ ...owner, start: ticks }));
    await assert.rejects(lockLora(ws, 'lora_x'), LockBusy);
    await writeFile(lockPath(ws, 'lora_x'), JSON.stringify({ ...owner, start: ticks - 1 }));
    const release = await lockLora(ws, 'lora_x');
    await release();
  });
});
