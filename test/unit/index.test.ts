/**
 * The live index: the persisted cache (a warm start re-reads nothing unchanged), and incremental
 * updates (a file added, changed, removed or renamed recomputes only its LoRAs and reports exactly
 * the status changes), on the torch-written fixture workspace.
 */
import { copyFixtureWorkspace, overwriteKeepingKey } from '../support/files';
import { strict as assert } from 'node:assert';
import { mkdir, readFile, rename, rm, unlink, utimes, writeFile, copyFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { basename, dirname, join, relative } from 'node:path';
import { existsSync, lstatSync } from 'node:fs';
import { openCheckpoint } from '../../server/src/formats/checkpoint';
import * as zlib from 'node:zlib';
import { cacheSaveDelayMs, Workspace } from '../../server/src/engine/workspace';
import { trainerStep } from '../../server/src/demo/trainerStep';
import { entryPoolStats, shutdownEntryPool } from '../../server/src/engine/entryPool';
import { availableParallelism } from 'node:os';

describe('live index: cache and incremental updates', function () {
  this.timeout(60000);
  let dir: string;
  beforeEach(async () => {
    dir = await copyFixtureWorkspace('lora-index-');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));
  after(() => shutdownEntryPool());

  it('a warm start re-reads no unchanged file and gives the same report', async () => {
    const a = await Workspace.open(dir);
    const s1 = await a.scan();
    assert.equal(s1.read, s1.files);
    assert.equal(s1.cacheNote, 'no cache yet');
    const r1 = await a.report();
    const b = await Workspace.open(dir);
    const s2 = await b.scan();
    assert.equal(s2.read, 0);
    assert.equal(s2.reused, s1.files);
    assert.deepEqual(await b.report(), r1);
    // one file changes on disk: the next process reads exactly that one
    const f = join(dir, '💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt');
    await writeFile(f, await readFile(f));
    const c = await Workspace.open(dir);
    assert.equal((await c.scan()).read, 1);
  });

  it('a scan on worker threads gives the same result as one on the main thread', async () => {
    const a = await Workspace.open(dir);
    await a.scan({ workers: false });
    await rm(join(dir, '.lora-sync'), { recursive: true });
    const before = entryPoolStats();
    const b = await Workspace.open(dir);
    await b.scan({ workers: true });
    const after = entryPoolStats();
    if (availableParallelism() > 1) assert.ok(after.workerFiles > before.workerFiles, 'a worker read some files');
    assert.equal(after.fallbacks, before.fallbacks, 'no worker failed');
    assert.deepEqual(await b.report(), await a.report());
  });

  it('a cache write cut short by a kill leaves a temporary file that the next sync removes', async () => {
    const ws = await Workspace.open(dir);
    await ws.scan();
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const leftover = join(dir, '.lora-sync', `.index.jsonl.lora-sync-tmp-${dead}-0badf00d`);
    await writeFile(leftover, 'half a cache');
    const removed = await ws.removeStaleTempFiles();
    assert.deepEqual(removed, [`.lora-sync/.index.jsonl.lora-sync-tmp-${dead}-0badf00d`]);
  });

  it('a sync sweeps dead temporary files the listing saw and those in the folders it writes, and keeps a live one', async () => {
    const ws = await Workspace.open(dir);
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const files = (await ws.listFiles()).map((f) => relative(dir, f));
    const far = files[0];
    const farTemp = join(dirname(far), `.${basename(far)}.lora-sync-tmp-${dead}-00000001`);
    await writeFile(join(dir, farTemp), 'left by a killed sync');
    await ws.scan(); // the listing notes farTemp
    const target = files[files.length - 1];
    const nearTemp = join(dirname(target), `.${basename(target)}.lora-sync-tmp-${dead}-00000002`);
    const liveTemp = join(dirname(target), `.${basename(target)}.lora-sync-tmp-${process.ppid}-00000003`);
    await writeFile(join(dir, nearTemp), 'written after the listing');
    await writeFile(join(dir, liveTemp), 'a live writer');
    const removed = await ws.removeStaleTempFiles([target]);
    assert.deepEqual(removed.sort(), [farTemp, nearTemp].sort());
    assert.ok(existsSync(join(dir, liveTemp)), "a live process's temporary file stays");
    await rm(join(dir, liveTemp));
  });

  it('racily clean: a file rewritten in place within its mtime tick (same size, inode and mtime) is read again, in process and after a restart', async () => {
    const rel = '💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt';
    const f = join(dir, rel);
    const original = await readFile(f);
    // A trainer's write (in place: same inode), and a scan within the same moment. The mtime is set a
    // little ahead, in whole seconds, so the read stays "within its tick" however slow a shared machine is.
    await writeFile(f, original);
    await utimes(f, new Date(), aheadWholeSeconds());
    const ws = await Workspace.open(dir);
    await ws.scan();
    assert.equal(ws.entry(rel)!.kind, 'lora');
    const mtimeNs = lstatSync(f, { bigint: true }).mtimeNs;
    // A second write of the same size lands in the same timestamp tick: the (size, mtime, inode) key is
    // unchanged, the bytes are not (one byte of tensor data: its CRC no longer matches).
    const c = await openCheckpoint(f);
    const at = c.records!.find((r) => /\/data\/0$/.test(r.name))!.dataOffset;
    await c.close();
    const changed = Buffer.from(original);
    changed[at] ^= 0xff;
    await overwriteKeepingKey(f, changed);
    assert.equal(lstatSync(f, { bigint: true }).mtimeNs, mtimeNs, 'the key is the same as at the first read');
    const s = await ws.scan();
    assert.equal(s.read, 1, 'the racily clean file is read again, and only it');
    assert.equal(ws.entry(rel)!.kind, 'corrupt');
    // The cache saved it racily clean too: a new process reads it again rather than trusting the key.
    await overwriteKeepingKey(f, original);
    const next = await Workspace.open(dir);
    assert.equal((await next.scan()).read, 1);
    assert.equal(next.entry(rel)!.kind, 'lora');
    // At rest (mtime well before the read), the key is trusted again: nothing is read twice.
    await utimes(f, new Date(), new Date(Date.now() - 3_600_000));
    assert.equal((await next.scan()).read, 1);
    assert.equal((await next.scan()).read, 0);
    assert.equal((await (await Workspace.open(dir)).scan()).read, 0);
  });

  it('racily clean: a stale copy edited within its mtime tick after the scan is not overwritten by the sync', async () => {
    const rel = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';
    const f = join(dir, rel);
    const original = await readFile(f);
    await writeFile(f, original); // fresh: read within its tick (however slow the machine, see aheadWholeSeconds)
    await utimes(f, new Date(), aheadWholeSeconds());
    const ws = await Workspace.open(dir);
    await ws.scan();
    const plan = ws.plan();
    assert.ok(
      plan.some((l) => l.copies.some((c) => c.path === rel && c.action === 'write')),
      'the plan writes the STALE copy',
    );
    // A hand edit of its tensors (same size) lands in the same tick: same key, other bytes, valid file.
    const c = await openCheckpoint(f);
    const rec = c.records!.find((r) => /\/data\/0$/.test(r.name))!;
    await c.close();
    const edited = Buffer.from(original);
    edited[rec.dataOffset] ^= 0x01;
    // keep the file sound: fix the record's CRC in its data descriptor and central entry
    const oldCrc = rec.crc32;
    const newCrc = zlib.crc32(edited.subarray(rec.dataOffset, rec.dataOffset + rec.size));
    const le = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(n >>> 0);
      return b;
    };
    for (let i = edited.indexOf(le(oldCrc)); i >= 0; i = edited.indexOf(le(oldCrc), i + 4)) le(newCrc).copy(edited, i);
    await overwriteKeepingKey(f, edited);
    const res = await ws.sync(plan, { reason: 'MANUAL' });
    const out = res.loras.flatMap((l) => l.copies).find((x) => x.path === rel)!;
    assert.equal(out.outcome, 'skipped');
    assert.match(out.reason ?? '', /changed since the plan \(within its timestamp tick\)/);
    assert.ok((await readFile(f)).equals(edited), 'the edit is kept');
    assert.ok(res.synced > 0, 'the other copies are written');
  });

  it('the cache is saved within 2 s when saves are cheap, and at most ~5 % of the time when they are not', () => {
    assert.equal(cacheSaveDelayMs(0), 2000);
    assert.equal(cacheSaveDelayMs(60), 2000);
    assert.equal(cacheSaveDelayMs(600), 12_000);
    assert.equal(cacheSaveDelayMs(10_000), 60_000);
  });

  it('the cache is thrown away when its options, version or contents do not fit', async () => {
    await (await Workspace.open(dir)).scan();
    await writeFile(join(dir, 'lora-sync.json'), JSON.stringify({ copyKeys: ['team'] }));
    const s = await (await Workspace.open(dir)).scan();
    assert.equal(s.read, s.files);
    assert.match(s.cacheNote!, /options/);
    await writeFile(join(dir, '.lora-sync/index.jsonl'), '{"version": 1, "alg": "x", "con');
    const d = await (await Workspace.open(dir)).scan();
    assert.equal(d.read, d.files);
    assert.match(d.cacheNote!, /damaged/);
  });

  it('a copy seen DIVERGED stays DIVERGED when the source moves on, across restarts (the cache remembers)', async () => {
    const copy = 'İstanbul_Başakşehir/🎯_DRAW_EXPERTS/LoRA_A_0d0e0f.pt';
    const a = await Workspace.open(dir);
    await a.scan();
    assert.equal(a.status(copy)!.status, 'DIVERGED');
    // The trainer saves a newer source (match 50 -> 60) with different tensors.
    await trainerStep(join(dir, '⭐_AKTIF_EN_IYILER/LoRA_A.pt'), { match: 60 });
    const b = await Workspace.open(dir);
    await b.scan();
    assert.equal(b.status(copy)!.status, 'DIVERGED', 'remembered from the cache');
    assert.equal(b.status(copy)!.issues[0].type, 'CHANGED_SINCE_SYNC');
    assert.equal(b.status('💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt')!.status, 'STALE');
    assert.equal(b.plan({ loras: ['lora_a'] })[0].copies.find((c) => c.path === copy)!.action, 'refuse');
    // Without the cache, match numbers are all there is: documented limitation.
    await rm(join(dir, '.lora-sync'), { recursive: true });
    const c = await Workspace.open(dir);
    await c.scan();
    assert.equal(c.status(copy)!.status, 'STALE');
  });

  it('incremental: remove a source, bring it back, rename a copy, add a copy in a new folder', async () => {
    const ws = await Workspace.open(dir);
    await ws.scan();
    const src = '⭐_AKTIF_EN_IYILER/LoRA_A.pt';
    const saved = join(dir, 'saved.bak');
    await copyFile(join(dir, src), saved);
    await unlink(join(dir, src));
    let ch = await ws.update([src]);
    // the source is gone: every copy of LoRA_A is an orphan now, nothing else changed
    assert.deepEqual(
      ch.map((c) => c.path),
      [
        'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt',
        'İstanbul_Başakşehir/🎯_DRAW_EXPERTS/LoRA_A_0d0e0f.pt',
        '⭐_AKTIF_EN_IYILER/LoRA_A.pt',
        '🏛️_NEWTON_HALL/LoRA_A_7a8b9c.pt',
        '💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt',
      ].sort(),
    );
    assert.ok(ch.filter((c) => c.path !== src).every((c) => c.after === 'ORPHAN'));
    assert.equal(ch.find((c) => c.path === src)!.after, undefined);
    await copyFile(saved, join(dir, src));
    ch = await ws.update([src]);
    assert.equal(ch.find((c) => c.path === '💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt')!.after, 'IN_SYNC');
    assert.equal(ch.find((c) => c.path === src)!.after, 'SOURCE');
    // rename a copy into another folder: one path goes, one comes, same status
    const from = '💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt';
    const to = 'Liverpool/🎯_WIN_EXPERTS/LoRA_A_1a2b3c.pt';
    await mkdir(join(dir, 'Liverpool/🎯_WIN_EXPERTS'), { recursive: true });
    await rename(join(dir, from), join(dir, to));
    ch = await ws.update([join(dir, from), join(dir, to)]);
    assert.deepEqual(
      ch,
      [
        { path: to, before: undefined, after: 'IN_SYNC' },
        { path: from, before: 'IN_SYNC', after: undefined },
      ].sort((a, b) => (a.path < b.path ? -1 : 1)),
    );
    // a promoted LoRA copied into a new hall: tracked at once, with its status
    await mkdir(join(dir, '🌟_EINSTEIN_HALL'));
    await copyFile(
      join(dir, 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt'),
      join(dir, '🌟_EINSTEIN_HALL/LoRA_A_9f9f9f.pt'),
    );
    ch = await ws.update([join(dir, '🌟_EINSTEIN_HALL/LoRA_A_9f9f9f.pt')]);
    assert.deepEqual(ch, [{ path: '🌟_EINSTEIN_HALL/LoRA_A_9f9f9f.pt', before: undefined, after: 'STALE' }]);
    // an unchanged file: nothing to report, nothing read
    assert.deepEqual(await ws.update([join(dir, src)]), []);
    // the incremental state equals a fresh scan of the same disk
    const fresh = await Workspace.open(dir);
    await fresh.scan();
    assert.deepEqual((await fresh.report()).files, (await ws.report()).files);
  });
});

/** A whole-second mtime 30 s ahead: a key taken any time before then is racily clean (scanner.racyWindowMs). */
function aheadWholeSeconds(): Date {
  return new Date((Math.ceil(Date.now() / 1000) + 30) * 1000);
}
