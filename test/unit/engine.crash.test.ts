/**
 * SIGKILL in the middle of `lora-sync sync --all` (the built CLI, a real separate process): at every
 * kill point each checkpoint is either its old bytes or a complete new checkpoint (CRCs good, the
 * source's tensors, the copy's own keys unchanged), nothing is missing, and a second sync finishes
 * the job and leaves no temporary file behind.
 */
import { walk, sha256File, ensureBuilt } from '../support/files';
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { copyFile, cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { generateSeedWorkspace } from '../../server/src/demo/seedWorkspace';
import { prng } from '../../server/src/demo/loraTree';
import { openCheckpoint } from '../../server/src/formats/checkpoint';
import { fingerprintCheckpoint } from '../../server/src/formats/fingerprint';
import { getKey } from '../../server/src/formats/pickle/nodes';
import { typedForm, Typed } from '../../server/src/formats/pyValue';
import { DEFAULT_CONFIG } from '../../server/src/engine/config';
import { TEMP_MARK } from '../../server/src/io/atomicWrite';

const REPO = join(__dirname, '..', '..');
const COPY_KEYS = DEFAULT_CONFIG.copyKeys;
const KILLS = 12;

interface TensorFp { path: string; dtype: string; shape: number[]; digest: string }
interface Known { rel: string; role: 'source' | 'copy' | 'other'; expect: string; sha: string; source?: string }



const sha256 = sha256File;
const isTemp = (rel: string) => rel.includes(TEMP_MARK);

async function fingerprintOf(abs: string): Promise<{ tensors: TensorFp[]; copyKeys: Typed[]; crcFailures: number; crcChecked: boolean; lastSyncMatch?: Typed; hasEngineRecord: boolean }> {
  const c = await openCheckpoint(abs);
  try {
    const fp = await fingerprintCheckpoint(c);
    const meta = getKey(c.root!, 'metadata');
    const info = meta && getKey(meta, 'sync_info');
    const match = info && getKey(info, 'last_sync_match');
    return {
      tensors: fp.tensors.map(({ path, dtype, shape, digest }) => ({ path, dtype, shape, digest })),
      copyKeys: COPY_KEYS.map((k) => { const v = meta && getKey(meta, k); return v ? typedForm(v) : ['missing'] as Typed; }),
      crcFailures: fp.crcFailures.length,
      crcChecked: fp.crcChecked,
      lastSyncMatch: match ? typedForm(match) : undefined,
      hasEngineRecord: !!(info && getKey(info, 'lora_sync')),
    };
  } finally {
    await c.close();
  }
}

function run(cli: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (b) => (out += b));
    p.stderr.on('data', (b) => (err += b));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

/** Spawns `sync --all` and SIGKILLs it after `delayMs`; resolves with how it ended. */
function syncAndKill(cli: string, root: string, delayMs: number): Promise<{ signal: NodeJS.Signals | null; code: number | null; ranMs: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, [cli, 'sync', '--all', '--root', root], { stdio: 'ignore' });
    const timer = setTimeout(() => p.kill('SIGKILL'), delayMs);
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, ranMs: performance.now() - t0 });
    });
  });
}

async function mapLimit<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: n }, async () => { while (i < items.length) await fn(items[i++]); }));
}

describe('engine: SIGKILL during `sync --all` (built CLI)', function () {
  this.timeout(180000);
  let tmp: string;
  let cli: string;
  let pristine: string;
  const known = new Map<string, Known>();
  const srcFp = new Map<string, TensorFp[]>();
  const copyKeysBefore = new Map<string, Typed[]>();

  before(async function () {
    ensureBuilt();
    tmp = await mkdtemp(join(tmpdir(), 'lora-crash-'));
    // Our own copy of the bundle: another `npm run build` cannot swap it while we spawn it.
    cli = join(tmp, 'cli.js');
    await copyFile(join(REPO, 'dist', 'cli.js'), cli);
    pristine = join(tmp, 'pristine');
    const seed = await generateSeedWorkspace(pristine, { loras: 40, copies: 160, problems: { stale: 120 } });
    const byLora = new Map(seed.files.filter((f) => f.role === 'source').map((f) => [f.lora, relative(pristine, f.path).split(sep).join('/')]));
    for (const f of seed.files) {
      const rel = relative(pristine, f.path).split(sep).join('/');
      known.set(rel, { rel, role: f.role, expect: f.expect, sha: await sha256(f.path), source: f.role === 'copy' ? byLora.get(f.lora) : undefined });
    }
    for (const rel of await walk(pristine)) {
      if (!known.has(rel)) known.set(rel, { rel, role: 'other', expect: 'OTHER', sha: await sha256(join(pristine, rel)) });
    }
    const stale = [...known.values()].filter((k) => k.expect === 'STALE').length;
    assert.ok(stale >= 100, `the generator gave only ${stale} STALE copies`);
    for (const k of known.values()) {
      if (k.role === 'source') srcFp.set(k.rel, (await fingerprintOf(join(pristine, k.rel))).tensors);
      if (k.role === 'copy') copyKeysBefore.set(k.rel, (await fingerprintOf(join(pristine, k.rel))).copyKeys);
    }
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  /** Each file old or wholly new; returns how many were replaced and how many temp files lie around. */
  async function checkAfterKill(root: string): Promise<{ replaced: number; temps: string[] }> {
    const files = await walk(root);
    const temps = files.filter(isTemp);
    const present = new Set(files);
    let replaced = 0;
    for (const k of known.values()) {
      assert.ok(present.has(k.rel), `${k.rel} is missing after the kill`);
      if ((await sha256(join(root, k.rel))) === k.sha) continue;
      assert.equal(k.expect, 'STALE', `${k.rel} (${k.expect}) was modified, but only STALE copies may be written`);
      await assertNewCheckpoint(root, k);
      replaced++;
    }
    // Nothing else appeared but temporary files and the engine's own state.
    const extra = files.filter((f) => !known.has(f) && !isTemp(f) && !f.startsWith('.lora-sync/'));
    assert.deepEqual(extra, [], 'unexpected new files');
    return { replaced, temps };
  }

  async function assertNewCheckpoint(root: string, k: Known): Promise<void> {
    const f = await fingerprintOf(join(root, k.rel));
    assert.equal(f.crcChecked, true, `${k.rel}: not a zip checkpoint`);
    assert.equal(f.crcFailures, 0, `${k.rel}: CRC failures in a written copy`);
    assert.deepEqual(f.tensors, srcFp.get(k.source!), `${k.rel}: tensors differ from its source ${k.source}`);
    assert.deepEqual(f.copyKeys, copyKeysBefore.get(k.rel), `${k.rel}: its own keys changed`);
    assert.deepEqual(f.lastSyncMatch, ['int', '50'], `${k.rel}: sync_info.last_sync_match should be the source's`);
    assert.ok(f.hasEngineRecord, `${k.rel}: no sync_info.lora_sync record`);
  }

  it('every kill point leaves old or complete new files; a rerun completes and cleans up', async () => {
    // Unkilled runs on copies: how long the scan takes (a dry run does only that) and the whole sync.
    const dry = join(tmp, 'dry-run');
    await cp(pristine, dry, { recursive: true });
    let t0 = performance.now();
    assert.equal((await run(cli, ['sync', '--all', '--dry-run', '--root', dry])).code, 0);
    const scanMs = performance.now() - t0;
    const base = join(tmp, 'baseline');
    await cp(pristine, base, { recursive: true });
    t0 = performance.now();
    const full = await run(cli, ['sync', '--all', '--root', base]);
    const duration = performance.now() - t0;
    assert.equal(full.code, 0, full.err);
    assert.match(full.out, /^120 synced, 0 failed/);
    assert.equal((await checkAfterKill(base)).replaced, 120);

    // Kill points spread over the run, each at a seeded-random point of its own slice: a quarter of
    // the slices cover start-up and the scan (nothing may change there), the rest the write phase.
    const rand = prng(0x5161c111);
    const inScan = Math.ceil(KILLS / 4);
    const writeFrom = Math.min(scanMs, duration * 0.6);
    const delays = Array.from({ length: KILLS }, (_, i) => {
      const [from, to, k, n] = i < inScan ? [0, writeFrom, i, inScan] : [writeFrom, duration * 0.97, i - inScan, KILLS - inScan];
      return Math.round(from + ((k + rand()) / n) * (to - from));
    });
    const points: Array<{ dir: string; delay: number; killed: boolean; replaced: number; temps: number }> = [];
    const killAt = async (delay: number) => {
      const dir = join(tmp, `kill-${points.length}`);
      let r;
      for (let attempt = 0; ; attempt++) {
        await rm(dir, { recursive: true, force: true });
        await cp(pristine, dir, { recursive: true });
        r = await syncAndKill(cli, dir, delay);
        if (r.signal === 'SIGKILL' || attempt === 2) break;
        // This run was quicker than the measured one and finished first: same relative point of its own run.
        assert.equal(r.code, 0, `the sync ended by itself with exit ${r.code}`);
        delay = Math.round(delay * Math.min(0.97, r.ranMs / duration));
      }
      const { replaced, temps } = await checkAfterKill(dir);
      points.push({ dir, delay, killed: r.signal === 'SIGKILL', replaced, temps: temps.length });
    };
    for (const d of delays) await killAt(d);
    // A temp file is there for about a third of each copy's time: if no kill hit one, try a few more.
    let extra = 0;
    while (!points.some((p) => p.temps > 0) && extra < 6) {
      extra++;
      await killAt(Math.round(writeFrom + rand() * (duration * 0.97 - writeFrom)));
    }

    // Then a second sync finishes what each killed run started.
    await mapLimit(points, 3, async (p) => {
      const again = await run(cli, ['sync', '--all', '--root', p.dir]);
      assert.equal(again.code, 0, `rerun after the kill at ${p.delay} ms: ${again.out}${again.err}`);
      const files = await walk(p.dir);
      assert.deepEqual(files.filter(isTemp), [], `temporary files left after the rerun (kill at ${p.delay} ms)`);
      assert.deepEqual([...known.keys()].filter((k) => !files.includes(k)), [], 'files missing after the rerun');
      const st = await run(cli, ['status', '--json', '--root', p.dir]);
      const report = JSON.parse(st.out) as { files: Array<{ path: string; status: string }> };
      const stale = report.files.filter((f) => f.status === 'STALE').map((f) => f.path);
      assert.deepEqual(stale, [], `still STALE after the rerun (kill at ${p.delay} ms)`);
      const unsound = report.files.filter((f) => !['SOURCE', 'IN_SYNC', 'UNRECOGNIZED'].includes(f.status));
      assert.deepEqual(unsound, [], 'files neither SOURCE nor IN_SYNC after the rerun');
      assert.equal(report.files.filter((f) => f.status === 'IN_SYNC').length, 160);
    });

    const killed = points.filter((p) => p.killed);
    const midWrite = killed.filter((p) => p.temps > 0);
    const between = killed.filter((p) => p.temps === 0 && p.replaced > 0);
    const beforeWrites = killed.filter((p) => p.temps === 0 && p.replaced === 0);
    console.log(`      unkilled: scan ${Math.round(scanMs)} ms, sync ${Math.round(duration)} ms; ${killed.length} of ${points.length} runs killed (${extra} extra): ` +
      `${midWrite.length} mid-write (temp file present), ${between.length} between writes, ${beforeWrites.length} before the first write`);
    console.log(`      kill points (ms: copies replaced/temp files): ${points.map((p) => `${p.delay}:${p.replaced}/${p.temps}${p.killed ? '' : '(finished)'}`).join(' ')}`);
    assert.ok(killed.length >= KILLS, `only ${killed.length} runs were still running when killed`);
    // The test is about writes being cut: some kills must have landed during one.
    assert.ok(midWrite.length >= 1, 'no kill landed mid-write: the kill points missed the write phase');
  });
});
