/**
 * Races.
 *
 * - A trainer rewrites its sources (the same paths) while syncs run, alternating two complete
 *   versions A and B (written by real torch.save when torch is installed), by atomic rename and by
 *   rewriting in place (truncate + write, what torch.save on the same path does); small sources (read
 *   whole) and sources over 4 MiB (streamed). After every pass each copy is its old bytes or a whole
 *   checkpoint holding exactly the tensors of one version of its source (as it was before the trainer
 *   started, A or B), with good CRCs, its own keys, and a sync record
 *   that tells the truth; once the trainer stops, the next pass brings every copy to B.
 * - A copy (or the source) changed between plan and write, through the executor with a plan made
 *   before the change: replaced, edited in place, edited while its new version is being written,
 *   gone, swapped for a directory or a link, rewritten within one timestamp tick (same size, mtime and
 *   inode), swapped for a file that would run code: never overwritten with something the plan did not
 *   see, always reported.
 * - Two processes syncing one workspace (two CLIs; the CLI beside an in-process engine, as beside
 *   the extension): per-LoRA locks, each copy written once; a dead owner's lock is taken over, by
 *   exactly one of several processes racing for it.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { copyFile, cp, mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { generateSeedWorkspace } from '../../server/src/demo/seedWorkspace';
import { trainerStep } from '../../server/src/demo/trainerStep';
import { DEFAULT_CONFIG } from '../../server/src/engine/config';
import { readEntry } from '../../server/src/engine/loraFile';
import { lockLora, lockPath } from '../../server/src/engine/loraLock';
import { Workspace } from '../../server/src/engine/workspace';
import { copyFixtureWorkspace, sha256File } from '../support/files';
import { addFigure, LONG } from './figures';
import {
  checkpointFacts,
  HAS_TORCH,
  isTemp,
  listTree,
  overwriteKeepingKey,
  privateCli,
  PY,
  reduceOf,
  runCli,
  sameSizeVariant,
  tempDir,
} from './support';
import * as N from '../../server/src/formats/pickle/nodes';

const SEC = 'races';
const STALE_A = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';
const DRIFT_A = '🏛️_NEWTON_HALL/LoRA_A_7a8b9c.pt';
const SOURCE_A = '⭐_AKTIF_EN_IYILER/LoRA_A.pt';

/** The trainer: writes whole versions over the sources until told to stop, then B everywhere. */
const TRAINER = String.raw`
const fs = require('fs');
const [spec, stop] = process.argv.slice(2);
const jobs = JSON.parse(fs.readFileSync(spec, 'utf8'));
const bytes = jobs.map((j) => [fs.readFileSync(j.a), fs.readFileSync(j.b)]);
let round = 0, renames = 0, inPlace = 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  while (!fs.existsSync(stop)) {
    for (let i = 0; i < jobs.length; i++) {
      const v = bytes[i][round % 2];
      if ((round + i) % 2) { fs.writeFileSync(jobs[i].path + '.trainer-tmp', v); fs.renameSync(jobs[i].path + '.trainer-tmp', jobs[i].path); renames++; }
      else { fs.writeFileSync(jobs[i].path, v); inPlace++; }
      // Bursts of rewrites, then pauses long enough for a sync to get through now and then.
      await sleep(Math.random() < 0.7 ? Math.random() * 4 : Math.random() * 150);
    }
    round++;
  }
  for (let i = 0; i < jobs.length; i++) { fs.writeFileSync(jobs[i].path + '.trainer-tmp', bytes[i][1]); fs.renameSync(jobs[i].path + '.trainer-tmp', jobs[i].path); }
  process.stdout.write(JSON.stringify({ rounds: round, renames, inPlace }));
})();
`;

/** Two versions of each source by real torch: every tensor new (seeded), last_sync_match 51 and 52. */
const TORCH_VERSIONS = String.raw`
import json, sys, torch
for job in json.load(open(sys.argv[1])):
    for k, out in enumerate((job["a"], job["b"])):
        obj = torch.load(job["path"])
        g = torch.Generator().manual_seed(job["seed"] * 10 + k)
        for name, t in obj["lora_params"].items():
            obj["lora_params"][name] = torch.randn(t.shape, generator=g) * 0.02
        obj["metadata"]["sync_info"]["last_sync_match"] = 51 + k
        torch.save(obj, out)
`;

interface CopyInfo {
  rel: string;
  lora: string;
  sha: string;
  keys: unknown;
}

describe('races: a trainer rewrites its sources while syncs run', function () {
  this.timeout(LONG ? 1_800_000 : 300_000);
  let tmp: string;
  let root: string;
  let cli: string;
  const copies: CopyInfo[] = [];
  /** LoRA id -> tensors digest of the source as generated (before the trainer's first write), of A and of B. */
  const versions = new Map<string, { o: string; a: string; b: string }>();
  const jobs: Array<{ path: string; a: string; b: string; seed: number; lora: string }> = [];

  before(async () => {
    tmp = await tempDir('lora-race-');
    cli = await privateCli(tmp);
    root = join(tmp, 'ws');
    // Small LoRAs (read whole) and LoRAs over 4 MiB (streamed from disk), every copy STALE.
    const small = await generateSeedWorkspace(root, { loras: 4, copies: 16, seed: 7, problems: { stale: 16 } });
    const big = await generateSeedWorkspace(root, {
      loras: 2,
      copies: 6,
      seed: 8,
      rank: 80,
      width: 4096,
      problems: { stale: 6 },
    });
    const rel = (p: string) => relative(root, p).split(sep).join('/');
    for (const f of [...small.files, ...big.files]) {
      if (f.role === 'source')
        jobs.push({
          path: f.path,
          a: join(tmp, `${jobs.length}.A.pt`),
          b: join(tmp, `${jobs.length}.B.pt`),
          seed: jobs.length + 1,
          lora: f.lora,
        });
      else
        copies.push({
          rel: rel(f.path),
          lora: f.lora,
          sha: await sha256File(f.path),
          keys: (await checkpointFacts(f.path)).copyKeys,
        });
    }
    assert.equal(copies.length, 22);
    if (HAS_TORCH) {
      writeFileSync(join(tmp, 'jobs.json'), JSON.stringify(jobs));
      execFileSync(PY, ['-c', TORCH_VERSIONS, join(tmp, 'jobs.json')]);
    } else {
      console.log('      (no torch: versions A and B written by our own writer)');
      for (const j of jobs) {
        await copyFile(j.path, j.a);
        for (const t of ['layers.0.lora_A', 'layers.0.lora_B', 'layers.1.lora_A', 'layers.1.lora_B'])
          await trainerStep(j.a, { tensor: t, match: 51 });
        await copyFile(j.a, j.b);
        for (const t of ['layers.0.lora_A', 'layers.0.lora_B', 'layers.1.lora_A', 'layers.1.lora_B'])
          await trainerStep(j.b, { tensor: t, match: 52 });
      }
    }
    for (const j of jobs) {
      const [o, a, b] = await Promise.all(
        [j.path, j.a, j.b].map((p) => readEntry(p, 'x/⭐_AKTIF_EN_IYILER/x.pt', DEFAULT_CONFIG)),
      );
      assert.ok(
        a.loraId === j.lora && b.loraId === j.lora && a.tensors.length === 4,
        'versions keep the LoRA id and its four tensors',
      );
      // A mix of A and B would be caught: every tensor differs between them.
      assert.ok(a.tensors.every((t, i) => t.digest !== b.tensors[i].digest));
      versions.set(j.lora, { o: o.tensorsDigest, a: a.tensorsDigest, b: b.tensorsDigest });
    }
  });
  after(() => rm(tmp, { recursive: true, force: true, maxRetries: 5 }));

  /** Every copy: untouched, or a whole checkpoint with one source version's tensors, its own keys, a true record. */
  async function checkCopies(): Promise<{ untouched: number; o: number; a: number; b: number }> {
    const seen = { untouched: 0, o: 0, a: 0, b: 0 };
    for (const c of copies) {
      const abs = join(root, c.rel);
      if ((await sha256File(abs)) === c.sha) {
        seen.untouched++;
        continue;
      }
      const e = await readEntry(abs, c.rel, DEFAULT_CONFIG);
      assert.equal(e.kind, 'lora', `${c.rel}: ${e.error?.message}`);
      const v = versions.get(c.lora)!;
      assert.ok(
        [v.o, v.a, v.b].includes(e.tensorsDigest),
        `${c.rel} holds the tensors of no complete version of its source: a mix`,
      );
      assert.equal(
        e.syncInfo.engine?.tensors,
        e.tensorsDigest,
        `${c.rel}: its sync record names other tensors than it holds`,
      );
      const f = await checkpointFacts(abs);
      assert.ok(f.crcChecked && f.crcFailures === 0, `${c.rel}: CRC`);
      assert.deepEqual(f.copyKeys, c.keys, `${c.rel}: its own keys changed`);
      seen[e.tensorsDigest === v.o ? 'o' : e.tensorsDigest === v.a ? 'a' : 'b']++;
    }
    return seen;
  }

  it('each copy is its old bytes or one complete version after every pass; the pass after the trainer stops brings all to the latest', async () => {
    const stop = join(tmp, 'stop');
    writeFileSync(join(tmp, 'trainer.json'), JSON.stringify(jobs));
    writeFileSync(join(tmp, 'trainer.js'), TRAINER);
    const trainer = spawn(process.execPath, [join(tmp, 'trainer.js'), join(tmp, 'trainer.json'), stop], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let trainerOut = '';
    trainer.stdout.on('data', (b) => (trainerOut += b));
    const trainerDone = new Promise<void>((r) => trainer.on('close', () => r()));
    const ws = await Workspace.open(root);
    const outcomes: Record<string, number> = {};
    const kinds: Array<[RegExp, string]> = [
      [/since the plan|during the sync/, 'source or copy changed since the plan'],
      [/CRC|ended .* early|cannot be read/, 'source changed under the read'],
      [/read back/, 'read back differs'],
      [/already in sync/, 'in sync'],
      [/no source|blocked/, 'source unreadable at scan'],
    ];
    const note = (o: string, reason: string) => {
      const k = o === 'synced' ? o : `${o} (${kinds.find(([re]) => re.test(reason))?.[1] ?? reason})`;
      outcomes[k] = (outcomes[k] ?? 0) + 1;
    };
    const seen = { o: 0, a: 0, b: 0 };
    let passes = 0;
    const until = Date.now() + (LONG ? 60_000 : 8_000);
    // The race runs its time, and on a busy machine longer (up to 2 minutes), until it has written
    // enough copies to prove anything: the figure is about what raced, not how fast the machine is.
    const cap = Date.now() + 120_000;
    try {
      while (Date.now() < until || ((outcomes.synced ?? 0) < 20 && Date.now() < cap)) {
        if (passes % 3 === 2) {
          // A separate process now and then (what the CLI beside the extension does).
          const r = await runCli(cli, ['sync', '--all', '--json', '--root', root]);
          assert.ok(r.code === 0 || r.code === 1, r.err);
          for (const l of (
            JSON.parse(r.out) as { result: { loras: Array<{ copies: Array<{ outcome: string; reason: string }> }> } }
          ).result.loras)
            for (const c of l.copies) note(c.outcome, c.reason);
        } else {
          await ws.scan();
          const r = await ws.sync(ws.plan(), { reason: 'RACE' });
          for (const l of r.loras) for (const c of l.copies) note(c.outcome, c.reason);
        }
        passes++;
        const s = await checkCopies();
        seen.o += s.o;
        seen.a += s.a;
        seen.b += s.b;
      }
    } finally {
      writeFileSync(stop, '');
      await trainerDone;
    }
    const t = JSON.parse(trainerOut) as { rounds: number; renames: number; inPlace: number };
    assert.ok(t.renames > 10 && t.inPlace > 10, `the trainer barely ran: ${trainerOut}`);
    // The trainer has stopped with B everywhere: the next pass (a fresh process) finishes.
    const r = await runCli(cli, ['sync', '--all', '--root', root]);
    assert.equal(r.code, 0, r.out + r.err);
    const st = JSON.parse((await runCli(cli, ['status', '--json', '--root', root])).out) as {
      files: Array<{ path: string; status: string }>;
    };
    const status = new Map(st.files.map((f) => [f.path, f.status]));
    for (const c of copies) {
      assert.equal(status.get(c.rel), 'IN_SYNC', c.rel);
      assert.equal(
        (await readEntry(join(root, c.rel), c.rel, DEFAULT_CONFIG)).tensorsDigest,
        versions.get(c.lora)!.b,
        `${c.rel} is not at the latest version`,
      );
    }
    await checkCopies();
    assert.deepEqual((await listTree(root)).filter(isTemp), [], 'temporary files left');
    console.log(
      `      ${passes} passes against ${t.renames + t.inPlace} rewrites (${t.renames} renamed, ${t.inPlace} in place); copies seen at the first version ${seen.o}, at A ${seen.a}, at B ${seen.b} times; outcomes ${JSON.stringify(outcomes)}`,
    );
    assert.ok(outcomes.synced >= 20, `only ${outcomes.synced} copies were written during the race`);
    addFigure(SEC, 'trainer race passes', passes);
    addFigure(SEC, 'source rewrites during syncs', t.renames + t.inPlace);
    addFigure(SEC, 'copy states checked', passes * copies.length);
  });
});

describe('races: a file changes between plan and write (executor given the earlier plan)', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  async function fixture() {
    const dir = await copyFixtureWorkspace('lora-plan-');
    dirs.push(dir);
    const ws = await Workspace.open(dir);
    await ws.scan();
    return { dir, ws, plan: ws.plan({ loras: ['lora_a'] }) };
  }
  const outcomeOf = (res: Awaited<ReturnType<Workspace['sync']>>, path: string) =>
    res.loras.flatMap((l) => l.copies).find((c) => c.path === path)!;
  const noTemps = async (dir: string) =>
    assert.deepEqual((await listTree(dir)).filter(isTemp), [], 'temporary files left');

  const cases: Array<[string, (dir: string) => Promise<void>, RegExp]> = [
    [
      'replaced by an editor (new file renamed over it)',
      async (dir) => {
        await writeFile(join(dir, 'edit.tmp'), await readFile(join(dir, DRIFT_A)));
        await rename(join(dir, 'edit.tmp'), join(dir, STALE_A));
      },
      /changed since the plan/,
    ],
    [
      'edited in place (same inode, new bytes)',
      async (dir) => {
        const b = await readFile(join(dir, STALE_A));
        b[b.length - 30] ^= 1; // inside the end records: still the same size
        await writeFile(join(dir, STALE_A), b);
      },
      /changed since the plan/,
    ],
    [
      'deleted',
      async (dir) => {
        await rm(join(dir, STALE_A));
      },
      /vanished since the plan/,
    ],
    [
      'swapped for a directory',
      async (dir) => {
        await rm(join(dir, STALE_A));
        await mkdir(join(dir, STALE_A));
      },
      /became a directory since the plan/,
    ],
    [
      'swapped for a link to the same bytes elsewhere',
      async (dir) => {
        await rename(join(dir, STALE_A), join(dir, 'moved.bin'));
        await symlink(join(dir, 'moved.bin'), join(dir, STALE_A));
      },
      /became a symbolic link since the plan/,
    ],
  ];
  for (const [what, change, reason] of cases) {
    it(`a copy ${what}: not written, reported; the other copy goes on`, async () => {
      const { dir, ws, plan } = await fixture();
      await change(dir);
      const snap = existsSync(join(dir, STALE_A)) ? await listTree(dirname(join(dir, STALE_A))) : [];
      const before = await readFile(join(dir, STALE_A)).catch(() => undefined);
      const res = await ws.sync(plan, { reason: 'MANUAL' });
      const r = outcomeOf(res, STALE_A);
      assert.equal(r.outcome, 'skipped', JSON.stringify(r));
      assert.match(r.reason, reason);
      if (before) assert.ok((await readFile(join(dir, STALE_A))).equals(before), 'overwritten');
      if (snap.length) assert.deepEqual(await listTree(dirname(join(dir, STALE_A))), snap);
      assert.equal(outcomeOf(res, DRIFT_A).outcome, 'synced');
      await noTemps(dir);
      addFigure(SEC, 'plan/write races', 1);
    });
  }

  it("a copy's folder swapped for a link to a folder outside: nothing written outside, reported", async () => {
    const { dir, ws, plan } = await fixture();
    const outside = await tempDir('lora-outside-');
    dirs.push(outside);
    const folder = dirname(join(dir, STALE_A));
    await rename(folder, join(outside, 'moved'));
    await symlink(join(outside, 'moved'), folder);
    const before = await readFile(join(outside, 'moved', 'LoRA_A_4d5e6f.pt'));
    const res = await ws.sync(plan, { reason: 'MANUAL' });
    const r = outcomeOf(res, STALE_A);
    assert.equal(r.outcome, 'skipped');
    assert.match(r.reason, /leads outside the workspace/);
    assert.ok((await readFile(join(outside, 'moved', 'LoRA_A_4d5e6f.pt'))).equals(before), 'written through the link');
    assert.deepEqual((await listTree(outside)).filter(isTemp), []);
    addFigure(SEC, 'plan/write races', 1);
  });

  it('a copy edited while its new version is being written (a 20 MB LoRA): the edit wins, reported', async () => {
    const dir = await tempDir('lora-midwrite-');
    dirs.push(dir);
    await generateSeedWorkspace(dir, { loras: 1, copies: 1, rank: 320, width: 4096, problems: { stale: 1 } });
    const ws = await Workspace.open(dir);
    await ws.scan();
    const plan = ws.plan();
    const copy = plan[0].copies[0].path;
    const abs = ws.abs(copy);
    const editor = Buffer.from('the user saved something else here\n');
    let edited = false;
    // Edit the copy as soon as the temporary file of its new version appears beside it.
    const poll = setInterval(() => {
      if (edited) return;
      const temps = readdirSync(dirname(abs)).filter((n) => isTemp(n));
      if (temps.length) {
        edited = true;
        writeFileSync(`${abs}.editor`, editor);
        renameSync(`${abs}.editor`, abs);
      }
    }, 1);
    const res = await ws.sync(plan, { reason: 'MANUAL' }).finally(() => clearInterval(poll));
    assert.ok(edited, 'the write was over before the edit could land: make the LoRA bigger');
    const r = res.loras[0].copies[0];
    assert.equal(r.outcome, 'skipped', JSON.stringify(r));
    assert.match(r.reason, /changed since the plan/);
    assert.ok((await readFile(abs)).equals(editor), 'the edit was overwritten');
    await noTemps(dir);
    addFigure(SEC, 'plan/write races', 1);
  });

  it('the source rewritten in place within one timestamp tick (same size, mtime, inode): no copy gets the unplanned version', async () => {
    const { dir, ws, plan } = await fixture();
    const src = join(dir, SOURCE_A);
    await mkdir(join(dir, 'scratch'));
    const other = join(dir, 'scratch', 'LoRA_A.pt'); // same name: the archive folder inside is named after it
    await copyFile(src, other);
    await trainerStep(other, { tensor: 'layers.0.lora_A' }); // a new version of the same size
    const before = await Promise.all([STALE_A, DRIFT_A].map((p) => readFile(join(dir, p))));
    await overwriteKeepingKey(src, await readFile(other));
    const res = await ws.sync(plan, { reason: 'MANUAL' });
    for (const [i, p] of [STALE_A, DRIFT_A].entries()) {
      const r = outcomeOf(res, p);
      assert.equal(r.outcome, 'failed', JSON.stringify(r));
      assert.match(r.reason, /does not hold what the plan read in the source/);
      assert.ok((await readFile(join(dir, p))).equals(before[i]), `${p} was replaced`);
    }
    await noTemps(dir);
    addFigure(SEC, 'plan/write races', 1);
  });

  it('a copy swapped for one that would run code, within one tick: refused, never overwritten', async () => {
    const { dir, ws, plan } = await fixture();
    const abs = join(dir, STALE_A);
    const evil = await sameSizeVariant(
      abs,
      join(dir, 'scratch'),
      (meta) => {
        meta.entries.push([N.str('hook'), reduceOf('posix', 'system', [N.str('touch /tmp/lora-sync-never')])]);
      },
      ['fitness_history', 'temperament', 'life_energy'],
    );
    await overwriteKeepingKey(abs, evil);
    const res = await ws.sync(plan, { reason: 'MANUAL' });
    const r = outcomeOf(res, STALE_A);
    assert.equal(r.outcome, 'refused', JSON.stringify(r));
    assert.match(r.reason, /posix\.system/);
    assert.ok((await readFile(abs)).equals(evil));
    assert.equal(outcomeOf(res, DRIFT_A).outcome, 'synced');
    addFigure(SEC, 'plan/write races', 1);
  });

  it('the source swapped for one that would run code, within one tick: nothing propagated', async () => {
    const { dir, ws, plan } = await fixture();
    const src = join(dir, SOURCE_A);
    const evil = await sameSizeVariant(
      src,
      join(dir, 'scratch'),
      (meta) => {
        meta.entries.push([N.str('hook'), reduceOf('builtins', 'eval', [N.str('__import__("os").system("true")')])]);
      },
      ['fitness_history', 'temperament', 'life_energy'],
    );
    const before = await Promise.all([STALE_A, DRIFT_A].map((p) => readFile(join(dir, p))));
    await overwriteKeepingKey(src, evil);
    const res = await ws.sync(plan, { reason: 'MANUAL' });
    for (const [i, p] of [STALE_A, DRIFT_A].entries()) {
      const r = outcomeOf(res, p);
      assert.equal(r.outcome, 'skipped', JSON.stringify(r));
      assert.match(r.reason, /builtins\.eval.*never propagated/);
      assert.ok((await readFile(join(dir, p))).equals(before[i]));
    }
    addFigure(SEC, 'plan/write races', 1);
  });
});

describe('races: two processes sync one workspace', function () {
  this.timeout(LONG ? 1_200_000 : 240_000);
  let tmp: string;
  let cli: string;
  let pristine: string;
  let stale: string[];
  const ROUNDS = LONG ? 10 : 2;
  let contended = 0;

  before(async () => {
    tmp = await tempDir('lora-two-');
    cli = await privateCli(tmp);
    pristine = join(tmp, 'pristine');
    const seed = await generateSeedWorkspace(pristine, { loras: 60, copies: 240, problems: { stale: 200 } });
    stale = seed.files
      .filter((f) => f.expect === 'STALE')
      .map((f) => relative(pristine, f.path).split(sep).join('/').normalize('NFC'));
  });
  after(() => rm(tmp, { recursive: true, force: true, maxRetries: 5 }));

  type Outcomes = Array<{ path: string; outcome: string; reason: string }>;
  const outcomesOf = (json: string): Outcomes =>
    (JSON.parse(json) as { result: { loras: Array<{ copies: Outcomes }> } }).result.loras.flatMap((l) => l.copies);

  /** Each STALE copy written by exactly one of the writers; none left behind; no temp file, no lock. */
  async function checkRound(dir: string, results: Outcomes[]): Promise<void> {
    const writers = new Map<string, number>();
    for (const r of results)
      for (const c of r) if (c.outcome === 'synced') writers.set(c.path, (writers.get(c.path) ?? 0) + 1);
    for (const r of results) contended += r.filter((c) => /another LoRA Sync process/.test(c.reason)).length;
    assert.deepEqual(
      [...writers].filter(([, n]) => n > 1),
      [],
      'a copy was written by both',
    );
    assert.deepEqual(
      stale.filter((p) => !writers.has(p)),
      [],
      'STALE copies written by neither',
    );
    const files = await listTree(dir);
    assert.deepEqual(
      files.filter((f) => isTemp(f) || f.startsWith('.lora-sync/locks/')),
      [],
      'temporary files or locks left',
    );
    const st = JSON.parse((await runCli(cli, ['status', '--json', '--root', dir])).out) as {
      files: Array<{ path: string; status: string }>;
    };
    assert.deepEqual(
      st.files.filter((f) => f.status === 'STALE' || f.status === 'CORRUPT').map((f) => f.path),
      [],
    );
  }

  it('two CLI processes at once: per-LoRA locks, each copy written once, all synced', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const dir = join(tmp, `cli-${round}`);
      await cp(pristine, dir, { recursive: true });
      const [a, b] = await Promise.all([0, 1].map(() => runCli(cli, ['sync', '--all', '--json', '--root', dir])));
      for (const r of [a, b]) assert.ok(r.code === 0 || r.code === 1, r.err);
      await checkRound(dir, [outcomesOf(a.out), outcomesOf(b.out)]);
      addFigure(SEC, 'two-writer rounds', 1);
    }
  });

  it('the CLI beside an in-process engine (as beside the extension): the same', async () => {
    const dir = join(tmp, 'mixed');
    await cp(pristine, dir, { recursive: true });
    const ws = await Workspace.open(dir);
    await ws.scan();
    const [c, inproc] = await Promise.all([
      runCli(cli, ['sync', '--all', '--json', '--root', dir]),
      ws.sync(ws.plan(), { reason: 'MANUAL' }),
    ]);
    await checkRound(dir, [outcomesOf(c.out), inproc.loras.flatMap((l) => l.copies)]);
    addFigure(SEC, 'two-writer rounds', 1);
    console.log(`      ${contended} copies skipped because the other process held their LoRA`);
    assert.ok(contended > 0, 'the two writers never met: the lock was not exercised');
  });
});

describe('races: locks', function () {
  this.timeout(120_000);
  let dir: string;
  beforeEach(async () => {
    dir = await copyFixtureWorkspace('lora-lock-');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  async function holdLock(pid: number, lora = 'lora_a') {
    await mkdir(join(dir, '.lora-sync', 'locks'), { recursive: true });
    await writeFile(
      lockPath(dir, lora),
      JSON.stringify({ pid, host: hostname(), since: '2026-01-01T00:00:00Z', lora }),
    );
  }
  const deadPid = () => spawnSync(process.execPath, ['-e', '0']).pid!;

  it('a LoRA locked by a live process is not written; the others are', async () => {
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)']);
    try {
      await holdLock(holder.pid!);
      const before = await readFile(join(dir, STALE_A));
      const ws = await Workspace.open(dir);
      await ws.scan();
      const r = await ws.sync(ws.plan(), { reason: 'MANUAL' });
      const c = r.loras.find((l) => l.id === 'lora_a')!.copies.find((x) => x.path === STALE_A)!;
      assert.equal(c.outcome, 'skipped');
      assert.match(c.reason, new RegExp(`another LoRA Sync process \\(pid ${holder.pid}`));
      assert.ok((await readFile(join(dir, STALE_A))).equals(before));
      assert.equal(
        r.loras
          .find((l) => l.id === 'lora_b')!
          .copies.find((x) => x.path === '💎_PERFECT_HYBRID_HALL/LoRA_B_b0b1b2.pt')!.outcome,
        'synced',
      );
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('a lock left by a dead process is taken over and released; dead locks of LoRAs with nothing to write are removed', async () => {
    await holdLock(deadPid());
    await holdLock(deadPid(), 'lora_h'); // lora_h is in sync: nothing will take this one over
    const ws = await Workspace.open(dir);
    await ws.scan();
    const r = await ws.sync(ws.plan({ loras: ['lora_a'] }), { reason: 'MANUAL' });
    assert.equal(r.loras[0].copies.find((x) => x.path === STALE_A)!.outcome, 'synced');
    assert.deepEqual(await listTree(join(dir, '.lora-sync', 'locks')), [], 'no lock left behind');
  });

  it('several processes racing to take over one dead lock: exactly one gets it', async () => {
    // In one process (the I/O interleaves on the thread pool): many rounds quickly.
    const rounds = LONG ? 3000 : 300;
    const dead = deadPid();
    let doubles = 0;
    for (let round = 0; round < rounds; round++) {
      await rm(join(dir, '.lora-sync'), { recursive: true, force: true });
      await holdLock(dead);
      const got = await Promise.all(
        Array.from({ length: 6 }, () =>
          lockLora(dir, 'lora_a').then(
            () => 1,
            () => 0,
          ),
        ),
      );
      const n = got.reduce<number>((a, b) => a + b, 0);
      if (n !== 1) doubles++;
    }
    assert.equal(doubles, 0, `${doubles} of ${rounds} rounds did not end with exactly one holder`);
    // And across processes: six at once, holding what they got for a second.
    const taker = join(dir, 'taker.ts');
    await writeFile(
      taker,
      `import { lockLora } from ${JSON.stringify(join(__dirname, '../../server/src/engine/loraLock'))};
const [root, at] = process.argv.slice(2);
(async () => {
  while (Date.now() < Number(at)) {}
  try { await lockLora(root, 'lora_a'); const t = Date.now(); await new Promise((r) => setTimeout(r, 1000)); process.stdout.write(t + ' ' + Date.now()); }
  catch { process.stdout.write('busy'); }
})();`,
    );
    const xrounds = LONG ? 10 : 1;
    for (let round = 0; round < xrounds; round++) {
      await rm(join(dir, '.lora-sync'), { recursive: true, force: true });
      await holdLock(deadPid());
      const at = Date.now() + 2500;
      const outs = await Promise.all(
        Array.from(
          { length: 6 },
          () =>
            new Promise<string>((res) => {
              const p = spawn(process.execPath, ['--import', 'tsx', taker, dir, String(at)], {
                cwd: join(__dirname, '..', '..'),
              });
              let o = '';
              p.stdout.on('data', (b) => (o += b));
              p.on('close', () => res(o));
            }),
        ),
      );
      const spans = outs.filter((o) => o !== 'busy').map((o) => o.split(' ').map(Number));
      const overlap = spans.some((s, i) => spans.some((t, j) => i !== j && s[0] < t[1] && t[0] < s[1]));
      assert.ok(!overlap, `two processes held the lock at once: ${outs.join(' | ')}`);
      assert.ok(spans.length >= 1, outs.join(' | '));
    }
    addFigure(SEC, 'lock takeover races', rounds + xrounds);
  });
});
