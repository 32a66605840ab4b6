/**
 * Interruption: SIGKILL of `lora-sync sync --all` (the built CLI, a real process) on a seed-sized
 * workspace (120 LoRAs, 487 copies, most of them STALE), at hundreds of points spread over the run:
 *
 * - at exact steps, through the fault seam (io/faults.ts `kill@N`): the N-th step of the write path
 *   (temporary file created, written, flushed, renamed, folder flushed; history append; cache write).
 *   Each killed run is followed by the next run of a chain, itself killed further on, until one
 *   finishes: every run but the first starts from what a kill left behind;
 * - after seeded random delays from a fresh copy (scan phase included), then a rerun.
 *
 * The sync clock is fixed (`clock@`), so an unkilled sync (the baseline) writes each copy's new
 * version byte for byte: after every kill each file's sha256 is its old one or its new one, nothing
 * is missing, nothing else appeared but temporary files and the engine's own state, and temporary
 * files belong only to the killed process (the next run removed older ones). The baseline's new
 * versions are checked once with our reader (CRCs, the source's tensors, the copy's own keys) and,
 * when torch is installed, with torch.load. A finished chain or rerun is byte-identical to the
 * baseline: no temporary file, no lock, every copy synced.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { lstatSync, writeFileSync } from 'node:fs';
import { cp, rm } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { generateSeedWorkspace } from '../../server/src/demo/seedWorkspace';
import { History } from '../../server/src/engine/history';
import { mapLimit } from '../../server/src/io/mapLimit';
import { sha256File } from '../support/files';
import { LONG, setFigure } from './figures';
import {
  CLOCK,
  checkpointFacts,
  HAS_TORCH,
  PY,
  isTemp,
  listTree,
  prng,
  privateCli,
  runCli,
  tempDir,
  tempPid,
} from './support';

const SEC = 'interruption';
/** Distinct seam kill points to reach (two lanes run side by side), and kills per chain before it is let finish. */
const SEAM_POINTS = LONG ? 1000 : 210;
const KILLS_PER_CHAIN = 100;
const DELAY_KILLS = LONG ? 60 : 8;

interface Known {
  rel: string;
  expect: string;
  old: string;
  source?: string;
}

describe('interruption: SIGKILL during `sync --all` of a seed-sized workspace', function () {
  this.timeout(LONG ? 3_600_000 : 600_000);
  let tmp: string;
  let cli: string;
  let pristine: string;
  const known = new Map<string, Known>();
  /** The new version of each file the baseline sync rewrote. */
  const newSha = new Map<string, string>();
  let totalPoints = 0;
  let syncMs = 0;
  let scanMs = 0;
  const distinct = new Set<string>();
  const byPoint: Record<string, number> = {};
  /** How far the sync had got at each seam kill, in tenths of the copies it rewrites. */
  const deciles = new Array<number>(11).fill(0);
  const totals = { seamKills: 0, chains: 0, midWrite: 0, tempsLeft: 0, locksLeft: 0, filesChecked: 0, historyKills: 0 };

  before(async () => {
    tmp = await tempDir('lora-kill-');
    cli = await privateCli(tmp);
    pristine = join(tmp, 'pristine');
    const seed = await generateSeedWorkspace(pristine, {
      problems: { stale: 320, drift: 16, diverged: 3, corrupt: 2, unsafe: 1, orphan: 2 },
    });
    assert.equal(seed.copies, 487);
    const rel = (p: string) => relative(pristine, p).split(sep).join('/');
    const sourceOf = new Map(seed.files.filter((f) => f.role === 'source').map((f) => [f.lora, rel(f.path)]));
    for (const f of seed.files)
      known.set(rel(f.path), {
        rel: rel(f.path),
        expect: f.expect,
        old: await sha256File(f.path),
        source: f.role === 'copy' ? sourceOf.get(f.lora) : undefined,
      });
    for (const r of await listTree(pristine))
      if (!known.has(r)) known.set(r, { rel: r, expect: 'OTHER', old: await sha256File(join(pristine, r)) });

    // The baseline: an unkilled sync with the fixed clock, tracing its fault points.
    const base = join(tmp, 'baseline');
    await cp(pristine, base, { recursive: true });
    const dry = await runCli(cli, ['sync', '--all', '--dry-run', '--root', join(tmp, 'baseline')]);
    scanMs = dry.ms;
    await rm(join(base, '.lora-sync'), { recursive: true, force: true });
    const r = await runCli(cli, ['sync', '--all', '--root', base], { env: { LORA_SYNC_FAULTS: `${CLOCK};trace` } });
    assert.equal(r.code, 0, r.out + r.err);
    syncMs = r.ms;
    assert.match(r.out, /^336 synced, 0 failed/);
    totalPoints = r.err.split('\n').filter((l) => l.startsWith('lora-sync fault: point')).length;
    for (const k of known.values()) {
      const sha = await sha256File(join(base, k.rel));
      if (sha === k.old) continue;
      assert.ok(
        k.expect === 'STALE' || k.expect === 'METADATA_DRIFT',
        `${k.rel} (${k.expect}) was rewritten by the baseline`,
      );
      newSha.set(k.rel, sha);
    }
    assert.equal(newSha.size, 336);
    // The new versions, once: whole checkpoints with the source's tensors and the copy's own keys.
    for (const rel of newSha.keys()) {
      const k = known.get(rel)!;
      const [now, before, src] = await Promise.all([
        checkpointFacts(join(base, rel)),
        checkpointFacts(join(pristine, rel)),
        checkpointFacts(join(pristine, k.source!)),
      ]);
      assert.ok(now.crcChecked && now.crcFailures === 0, `${rel}: CRC`);
      assert.deepEqual(now.tensors, src.tensors, `${rel}: tensors differ from the source`);
      assert.deepEqual(now.copyKeys, before.copyKeys, `${rel}: its own keys changed`);
      assert.ok(now.engineRecord && now.unsafe === 0, rel);
    }
    const st = JSON.parse((await runCli(cli, ['status', '--json', '--root', base])).out) as {
      files: Array<{ path: string; status: string }>;
    };
    const wrong = st.files.filter(
      (f) =>
        (known.get(f.path)?.expect === 'STALE' || known.get(f.path)?.expect === 'METADATA_DRIFT') &&
        f.status !== 'IN_SYNC',
    );
    assert.deepEqual(wrong, [], 'copies not IN_SYNC after the baseline');
    if (HAS_TORCH) torchCheck(base);
    console.log(
      `      baseline: scan ${Math.round(scanMs)} ms, sync ${Math.round(syncMs)} ms, ${totalPoints} fault points, 336 copies rewritten`,
    );
  });
  after(() => rm(tmp, { recursive: true, force: true, maxRetries: 5 }));

  /** torch.load agrees: each rewritten copy holds its source's tensors (dtype and values) and its old own keys. */
  function torchCheck(base: string): void {
    const pairs = [...newSha.keys()].map((rel) => [
      join(base, rel),
      join(pristine, rel),
      join(pristine, known.get(rel)!.source!),
    ]);
    const list = join(tmp, 'pairs.json');
    writeFileSync(list, JSON.stringify(pairs));
    const script = `
import json, sys, torch
bad = []
for new, old, src in json.load(open(sys.argv[1])):
    n, o, s = torch.load(new), torch.load(old), torch.load(src)
    ps, pn = s["lora_params"], n["lora_params"]
    if list(ps) != list(pn) or not all(pn[k].dtype == ps[k].dtype and torch.equal(pn[k], ps[k]) for k in ps): bad.append(new + ": tensors")
    for k in ("team", "specialization_key", "score", "match_count", "exported_at"):
        if type(n["metadata"][k]) is not type(o["metadata"][k]) or n["metadata"][k] != o["metadata"][k]: bad.append(new + ": " + k)
print(json.dumps({"checked": len(json.load(open(sys.argv[1]))), "bad": bad}))
`;
    const res = JSON.parse(execFileSync(PY, ['-c', script, list], { encoding: 'utf8', maxBuffer: 1 << 24 })) as {
      checked: number;
      bad: string[];
    };
    assert.deepEqual(res.bad, []);
    assert.equal(res.checked, 336);
    setFigure(SEC, 'new versions loaded by torch.load', res.checked);
  }

  /**
   * sha256 of a file, remembered per (inode, mtime, size): a copy only ever changes by a rename onto
   * it (a new inode), so an unchanged key means unchanged bytes and the file need not be read again.
   */
  const shaCache = new Map<string, { key: string; sha: string }>();
  async function shaOf(abs: string): Promise<string> {
    const st = lstatSync(abs, { bigint: true });
    const key = `${st.ino}:${st.mtimeNs}:${st.size}`;
    const hit = shaCache.get(abs);
    if (hit?.key === key) return hit.sha;
    const sha = await sha256File(abs);
    shaCache.set(abs, { key, sha });
    return sha;
  }

  /** What a kill left: each file old or new, nothing lost, only our temporary files and state added. */
  async function checkKilled(
    dir: string,
    pid: number,
    killedAtCache: boolean,
    events: { n: number },
  ): Promise<{ replaced: number; temps: number; locks: number }> {
    const files = await listTree(dir);
    const present = new Set(files);
    let replaced = 0;
    for (const k of known.values()) {
      assert.ok(present.has(k.rel), `${k.rel} is missing after a kill`);
      const sha = await shaOf(join(dir, k.rel));
      totals.filesChecked++;
      if (sha === k.old) continue;
      assert.equal(sha, newSha.get(k.rel), `${k.rel} is neither its old nor its new version`);
      replaced++;
    }
    const temps = files.filter(isTemp);
    const locks = files.filter((f) => f.startsWith('.lora-sync/locks/') && f.endsWith('.lock'));
    const extra = files.filter((f) => !known.has(f) && !isTemp(f) && !f.startsWith('.lora-sync/'));
    assert.deepEqual(extra, [], 'unexpected new files');
    // Older runs' temporary files are gone once a sync started (only the cache write in the scan comes first).
    if (!killedAtCache)
      assert.deepEqual(
        temps.filter((t) => tempPid(t) !== pid),
        [],
        'temporary files of an earlier run were not removed',
      );
    // The history never loses an event and never holds a torn line after a SIGKILL.
    const h = await new History(dir).read();
    assert.equal(h.skippedLines, 0, 'history has unreadable lines');
    assert.ok(h.events.length >= events.n, 'history lost events');
    events.n = h.events.length;
    return { replaced, temps: temps.length, locks: locks.length };
  }

  async function checkFinished(dir: string): Promise<void> {
    const files = await listTree(dir);
    assert.deepEqual(files.filter(isTemp), [], 'temporary files left after a finished sync');
    assert.deepEqual(
      files.filter((f) => /\.lock|\.new$|\.takeover$/.test(f)),
      [],
      'locks left after a finished sync',
    );
    for (const k of known.values()) {
      assert.equal(
        await shaOf(join(dir, k.rel)),
        newSha.get(k.rel) ?? k.old,
        `${k.rel} differs from the unkilled sync's result`,
      );
    }
  }

  const killLine = (err: string) => {
    const m = /lora-sync fault: kill (\d+) (\S+) (.*)/.exec(err);
    assert.ok(m, `no kill line in ${err}`);
    return { n: Number(m[1]), point: m[2], file: m[3] };
  };

  it('at exact steps (fault seam), in chains of killed runs: old or new bytes, then finished', async () => {
    const lane = async (laneNo: number) => {
      const rand = prng(0x6b111 + laneNo);
      while (distinct.size < SEAM_POINTS) {
        const dir = join(tmp, `lane${laneNo}-chain${totals.chains++}`);
        await cp(pristine, dir, { recursive: true });
        const events = { n: 0 };
        const inChain = Math.min(KILLS_PER_CHAIN, Math.ceil((SEAM_POINTS - distinct.size) / 2) + 2);
        let replaced = 0;
        for (let k = 0; ; k++) {
          // Steps drawn so that a chain's kills spread over the whole run: what is left of it (six
          // points a copy) shared among the kills left, plus the six of the cache write a run starts with.
          const left = (totalPoints * (newSha.size - replaced)) / newSha.size;
          const step = 1 + Math.floor(rand() * (6 + (2 * left) / Math.max(1, inChain - k)));
          const rule = k < inChain ? `;kill@${step}` : ''; // the chain's quota reached: the next run finishes
          const r = await runCli(cli, ['sync', '--all', '--root', dir], { env: { LORA_SYNC_FAULTS: CLOCK + rule } });
          if (r.signal !== 'SIGKILL') {
            assert.equal(r.code, 0, `a run that was not killed failed: ${r.out}${r.err}`);
            break;
          }
          const at = killLine(r.err);
          const file = relative(dir, at.file).split(sep).join('/');
          const s = await checkKilled(dir, r.pid, file.endsWith('index.jsonl'), events);
          replaced = s.replaced;
          distinct.add(`${at.point} ${file} ${s.replaced}`);
          byPoint[at.point] = (byPoint[at.point] ?? 0) + 1;
          deciles[Math.floor((10 * s.replaced) / newSha.size)]++;
          totals.seamKills++;
          if (at.point.startsWith('history:')) totals.historyKills++;
          if (s.temps) totals.midWrite++;
          totals.tempsLeft += s.temps;
          totals.locksLeft += s.locks;
        }
        await checkFinished(dir);
        await rm(dir, { recursive: true, force: true });
      }
    };
    await Promise.all([lane(0), lane(1)]);
    console.log(
      `      ${totals.seamKills} seam kills in ${totals.chains} chains, ${distinct.size} distinct (point, file, progress); ${totals.midWrite} left a temporary file, ${totals.locksLeft} locks of dead runs taken over`,
    );
    assert.ok(distinct.size >= SEAM_POINTS, `only ${distinct.size} distinct kill points`);
    assert.ok(
      deciles.slice(0, 10).every((n) => n > 0),
      `kills not spread over the run: ${deciles}`,
    );
    assert.ok(totals.midWrite >= 10, 'too few kills landed mid-write');
    setFigure(SEC, 'seam kills', totals.seamKills);
    setFigure(SEC, 'distinct seam kill points', distinct.size);
    setFigure(SEC, 'seam kills per tenth of the run', deciles.join('/'));
    setFigure(
      SEC,
      'seam kills by step',
      Object.entries(byPoint)
        .sort()
        .map(([k, n]) => `${k}=${n}`)
        .join(' '),
    );
  });

  it('after random delays from a fresh start (scan included): old or new bytes; the rerun finishes', async () => {
    const rand = prng(0xde1a7);
    const inScan = Math.ceil(DELAY_KILLS / 4);
    const writeFrom = Math.min(scanMs, syncMs * 0.6);
    const delays = Array.from({ length: DELAY_KILLS }, (_, i) => {
      const [from, to, k, n] =
        i < inScan ? [0, writeFrom, i, inScan] : [writeFrom, syncMs * 0.97, i - inScan, DELAY_KILLS - inScan];
      return Math.round(from + ((k + rand()) / n) * (to - from));
    });
    const points: Array<{ delay: number; killed: boolean; replaced: number; temps: number }> = [];
    await mapLimit(delays, 2, async (delay0, i) => {
      const dir = join(tmp, `delay-${i}`);
      let delay = delay0;
      let r;
      for (let attempt = 0; ; attempt++) {
        await rm(dir, { recursive: true, force: true });
        await cp(pristine, dir, { recursive: true });
        r = await runCli(cli, ['sync', '--all', '--root', dir], {
          env: { LORA_SYNC_FAULTS: CLOCK },
          killAfterMs: delay,
        });
        if (r.signal === 'SIGKILL' || attempt === 3) break;
        assert.equal(r.code, 0, r.out + r.err);
        delay = Math.round(delay * Math.min(0.9, r.ms / syncMs)); // this run was quicker: same relative point
      }
      const s = await checkKilled(dir, r.pid, false, { n: 0 });
      points.push({ delay, killed: r.signal === 'SIGKILL', ...s });
      const again = await runCli(cli, ['sync', '--all', '--root', dir], { env: { LORA_SYNC_FAULTS: CLOCK } });
      assert.equal(again.code, 0, `rerun after a kill at ${delay} ms: ${again.out}${again.err}`);
      await checkFinished(dir);
      await rm(dir, { recursive: true, force: true });
    });
    const killed = points.filter((p) => p.killed);
    console.log(
      `      ${killed.length} of ${points.length} runs killed after ${points.map((p) => `${p.delay}:${p.replaced}/${p.temps}`).join(' ')} (ms: copies replaced/temporary files)`,
    );
    assert.ok(killed.length >= DELAY_KILLS - 2, `only ${killed.length} runs were still running when killed`);
    const kinds = {
      beforeWrites: killed.filter((p) => p.replaced === 0 && p.temps === 0).length,
      midWrite: killed.filter((p) => p.temps > 0).length,
    };
    assert.ok(kinds.beforeWrites >= 1, 'no kill landed before the first write');
    setFigure(SEC, 'delay kills', killed.length);
    setFigure(SEC, 'kill points survived', distinct.size + new Set(killed.map((p) => p.delay)).size);
    setFigure(SEC, 'kills that left a temporary file (removed by the next run)', totals.midWrite + kinds.midWrite);
    setFigure(SEC, 'locks of killed runs taken over', totals.locksLeft);
    setFigure(SEC, 'file states checked', totals.filesChecked);
    setFigure(SEC, 'files lost', 0);
  });
});
