/**
 * Hostile files and paths, end to end through the engine (the format-level crafted cases are in
 * test/unit/{zip,pickle,safetensors}.test.ts; mutation fuzzing in fuzz.faults.test.ts):
 *
 * - pickles that would run code (posix.system, builtins.eval, subprocess, torch.utils.collect_env.run,
 *   a global reached through getattr), written by real torch.save: reported UNSAFE, never executed
 *   (a payload would create a marker file; torch.load itself proves each payload live at the end), and
 *   never propagated by a sync, forced or not, whether the source or the copy carries them; the
 *   safety check is an allowlist: unknown and look-alike names are findings too;
 * - zip lies and bombs as copies and as a source: declared sizes past the file, overlapping records,
 *   a central directory outside the file, duplicate names, record names with `..`, and a deflate
 *   bomb that would inflate to far more memory than any LoRA (bounded, refused);
 * - links: a copy that is a link to a file outside is never written through, a link loop and a FIFO
 *   do not hang the scan;
 * - metadata that looks like paths (`../../`, absolute) is never used to build one.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, cp, mkdir, open, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as zlib from 'node:zlib';
import { Workspace } from '../../server/src/engine/workspace';
import { decodePickle } from '../../server/src/formats/pickle/decoder';
import { encodePickle } from '../../server/src/formats/pickle/encoder';
import * as N from '../../server/src/formats/pickle/nodes';
import { getKey, type PyDict } from '../../server/src/formats/pickle/nodes';
import { safetyFindings } from '../../server/src/formats/safety';
import { openCheckpoint } from '../../server/src/formats/checkpoint';
import { TreeBuilder } from '../../server/src/demo/loraTree';
import { trainerStep } from '../../server/src/demo/trainerStep';
import { copyFixtureWorkspace } from '../support/files';
import { addFigure, setFigure } from './figures';
import {
  centralEntries,
  HAS_TORCH,
  isTemp,
  listTree,
  privateCli,
  PY,
  pyScript,
  REPO,
  rewriteCheckpoint,
  runCli,
  snapshot,
  tempDir,
} from './support';

const SEC = 'hostile files';
const STALE_A = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';
const DRIFT_A = '🏛️_NEWTON_HALL/LoRA_A_7a8b9c.pt';
const SOURCE_B = '⭐_AKTIF_EN_IYILER/LoRA_B.pt';
const STALE_B = '💎_PERFECT_HYBRID_HALL/LoRA_B_b0b1b2.pt';

interface Made {
  unsafe_sources: Record<string, string>;
  clean_copies_of_unsafe: string[];
  unsafe_copies: Record<string, string>;
  clean_stale_copy: string;
}

(HAS_TORCH ? describe : describe.skip)(
  'hostile pickles written by real torch.save (skipped without torch: /usr/bin/python3 -c "import torch" fails)',
  function () {
    this.timeout(120_000);
    let tmp: string;
    let ws: string;
    let marker: string;
    let made: Made;
    let cli: string;
    const kinds = ['posix_system', 'eval', 'subprocess', 'collect_env', 'getattr'];
    const markers = () => kinds.filter((k) => existsSync(`${marker}.${k}`));

    before(async () => {
      tmp = await tempDir('lora-hostile-');
      cli = await privateCli(tmp);
      ws = join(tmp, 'ws');
      await mkdir(join(tmp, 'proof'));
      marker = join(tmp, 'proof', 'ran');
      made = JSON.parse(execFileSync(PY, [pyScript('make_hostile.py'), ws, marker], { encoding: 'utf8' })) as Made;
      // Python may write NFD or NFC; the engine reports NFC.
      const nfc = (o: Record<string, string>) =>
        Object.fromEntries(Object.entries(o).map(([k, v]) => [k.normalize('NFC'), v]));
      made = {
        unsafe_sources: nfc(made.unsafe_sources),
        unsafe_copies: nfc(made.unsafe_copies),
        clean_copies_of_unsafe: made.clean_copies_of_unsafe.map((p) => p.normalize('NFC')),
        clean_stale_copy: made.clean_stale_copy.normalize('NFC'),
      };
    });
    after(() => rm(tmp, { recursive: true, force: true }));

    it('every payload is reported UNSAFE with the globals it names; scan, status, verify, inspect, sync and forced sync run none of them and propagate none', async () => {
      const unsafe = { ...made.unsafe_sources, ...made.unsafe_copies };
      const before = await snapshot(ws);
      const st = JSON.parse((await runCli(cli, ['status', '--json', '--all', '--root', ws])).out) as {
        files: Array<{ path: string; status: string; issues: Array<{ type: string; detail: string }> }>;
      };
      const want: Record<string, RegExp> = {
        posix_system: /posix\.system/,
        eval: /__builtin__\.eval|builtins\.eval/,
        subprocess: /(subprocess|commands)\.check_call/,
        collect_env: /torch\.utils\.collect_env\.run/,
        getattr: /__builtin__\.getattr|builtins\.getattr/,
      };
      for (const [rel, kind] of Object.entries(unsafe)) {
        const f = st.files.find((x) => x.path === rel)!;
        assert.equal(f?.status, 'UNSAFE', rel);
        assert.ok(f.issues.every((i) => i.type === 'UNSAFE_GLOBAL'));
        assert.match(f.issues.map((i) => i.detail).join(' '), want[kind], rel);
      }
      for (const rel of Object.keys(unsafe)) await runCli(cli, ['inspect', join(ws, rel), '--json']);
      await runCli(cli, ['verify', '--root', ws]);
      const sync = await runCli(cli, ['sync', '--all', '--json', '--root', ws]);
      const forced = await runCli(cli, ['sync', '--all', '--force', '--json', '--root', ws]);
      // An in-process engine too (what the language server runs).
      const w = await Workspace.open(ws);
      await w.scan();
      await w.sync(w.plan({ force: true }), { reason: 'MANUAL' });
      assert.deepEqual(markers(), [], 'a payload ran');

      type Out = { result: { loras: Array<{ copies: Array<{ path: string; outcome: string; reason: string }> }> } };
      const outcomes = (JSON.parse(sync.out) as Out).result.loras.flatMap((l) => l.copies);
      for (const rel of Object.keys(made.unsafe_copies))
        assert.equal(outcomes.find((c) => c.path === rel)?.outcome, 'refused', rel);
      for (const rel of made.clean_copies_of_unsafe) {
        const c = outcomes.find((x) => x.path === rel)!;
        assert.equal(c.outcome, 'refused', rel);
        assert.match(c.reason, /unsafe.*never propagated/);
      }
      assert.equal(
        outcomes.find((c) => c.path === made.clean_stale_copy)?.outcome,
        'synced',
        'the clean copy of the clean LoRA is still synced',
      );
      assert.ok(
        (JSON.parse(forced.out) as Out).result.loras
          .flatMap((l) => l.copies)
          .every((c) => c.outcome !== 'synced' || c.path === made.clean_stale_copy),
      );

      // Nothing but the clean copy changed, and no file anywhere holds a global it did not hold before.
      const after = await snapshot(ws, (r) => r.startsWith('.lora-sync/'));
      for (const [rel, sha] of after)
        if (rel !== made.clean_stale_copy) assert.equal(sha, before.get(rel), `${rel} changed`);
      for (const rel of after.keys()) {
        const c = await openCheckpoint(join(ws, rel));
        const names = c.unsafe.map((u) => u.global);
        await c.close();
        assert.equal(names.length > 0, rel in unsafe, `${rel}: unsafe globals ${names}`);
      }
      addFigure(SEC, 'hostile pickles', Object.keys(unsafe).length);
    });

    it('the payloads are live: torch.load (run here, in a scratch folder) executes each one', () => {
      assert.deepEqual(markers(), [], 'a marker exists before the proof');
      const files = Object.keys(made.unsafe_sources).map((r) => join(ws, r));
      const r = spawnSync(PY, ['-c', 'import sys, torch\nfor f in sys.argv[1:]:\n    torch.load(f)', ...files], {
        cwd: join(tmp, 'proof'),
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(markers(), kinds, 'each payload creates its marker when torch.load runs it');
      setFigure(SEC, 'code executed by LoRA Sync', 'never (0 of 5 live payloads)');
    });
  },
);

describe('hostile pickles: the safety check is an allowlist', () => {
  /** A protocol-N pickle calling module.name() with no arguments. */
  const callPickle = (module: string, name: string, proto = 2) =>
    Buffer.concat([
      Buffer.from([0x80, proto]),
      Buffer.from(`c${module}\n${name}\n`, 'latin1'),
      Buffer.from(')R.', 'latin1'),
    ]);
  /** Protocol 4 STACK_GLOBAL with module and name pushed as strings. */
  const stackGlobal = (module: string, name: string) => {
    const s = (t: string) => {
      const b = Buffer.from(t, 'utf8');
      return Buffer.concat([Buffer.from([0x8c, b.length]), b]);
    };
    return Buffer.concat([
      Buffer.from([0x80, 4]),
      s(module),
      s(name),
      Buffer.from([0x93]),
      Buffer.from(')R.', 'latin1'),
    ]);
  };
  const findings = (b: Buffer) => safetyFindings(decodePickle(b).globals).map((f) => f.global);

  const flagged: Array<[string, Buffer]> = [
    ['an unknown module', callPickle('innocent_looking', 'helper')],
    ['torch.load itself', callPickle('torch', 'load')],
    ['a nested pickle loader', callPickle('torch.storage', '_load_from_bytes')],
    ['a rebuild function that does not exist', callPickle('torch._utils', '_rebuild_tensor_v9')],
    ['numpy.load', callPickle('numpy', 'load')],
    ['pickle.loads', callPickle('pickle', 'loads')],
    ['copyreg._reconstructor', callPickle('copyreg', '_reconstructor')],
    [
      'an attribute path through an allowed class (protocol 4 resolves dots)',
      stackGlobal('collections', 'OrderedDict.fromkeys'),
    ],
    ['an attribute path through an allowed function', stackGlobal('torch._utils', '_rebuild_tensor_v2.__globals__')],
    ['GLOBAL with a dotted name under PROTO 4', callPickle('torch', 'Size.__new__', 4)],
    ['an allowed name in another module', callPickle('os', 'OrderedDict')],
  ];
  for (const [what, bytes] of flagged) {
    it(`flags ${what}`, () => {
      assert.equal(findings(bytes).length, 1, `not flagged: ${what}`);
      addFigure(SEC, 'allowlist cases', 1);
    });
  }
  it('passes what a LoRA checkpoint is made of', () => {
    for (const [m, n] of [
      ['collections', 'OrderedDict'],
      ['torch._utils', '_rebuild_tensor_v2'],
      ['torch', 'FloatStorage'],
      ['_codecs', 'encode'],
    ]) {
      assert.deepEqual(findings(callPickle(m, n)), [], `${m}.${n}`);
    }
  });
});

describe('zip lies and bombs in a workspace', function () {
  this.timeout(120_000);
  let dir: string;
  let cli: string;
  let scratch: string;
  before(async () => {
    scratch = await tempDir('lora-zip-');
    cli = await privateCli(scratch);
  });
  after(() => rm(scratch, { recursive: true, force: true }));
  beforeEach(async () => {
    dir = await copyFixtureWorkspace('lora-lies-');
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  /** Lies told by a copy of the torch-written STALE copy of LoRA A, each one field or name. */
  const lies: Array<[string, (b: Buffer) => void, string[]]> = [
    [
      'a record size past the end of the file',
      (b) => {
        const cd = centralEntries(b)[1];
        b.writeUInt32LE(0xfffffff0, cd.at + 20);
        b.writeUInt32LE(0xfffffff0, cd.at + 24);
      },
      ['ZIP_TRUNCATED', 'ZIP_BAD_STRUCTURE'],
    ],
    [
      'overlapping records (data.pkl swallows the next header)',
      (b) => {
        const [pkl, next] = centralEntries(b);
        const grown =
          next.localOffset +
          10 -
          (pkl.localOffset + 30 + b.readUInt16LE(pkl.localOffset + 26) + b.readUInt16LE(pkl.localOffset + 28));
        b.writeUInt32LE(grown, pkl.at + 20);
        b.writeUInt32LE(grown, pkl.at + 24);
      },
      ['ZIP_OVERLAP', 'ZIP_BAD_STRUCTURE'],
    ],
    [
      'a central directory outside the file',
      (b) => {
        b.writeUInt32LE(b.length + 100, b.length - 22 + 16);
        b.writeBigUInt64LE(BigInt(b.length + 100), b.length - 22 - 20 - 56 + 48);
      },
      ['ZIP_TRUNCATED', 'ZIP_BAD_STRUCTURE'],
    ],
    [
      'two records with one name',
      (b) => {
        const [, one, two] = centralEntries(b);
        assert.equal(one.name.length, two.name.length);
        b.write(one.name, two.at + 46, 'utf8');
      },
      ['ZIP_DUPLICATE_NAME'],
    ],
    [
      'record names that climb out (../)',
      (b) => {
        for (const e of centralEntries(b)) {
          const prefix = e.name.split('/')[0];
          const evil = '../'.repeat(prefix.length).slice(0, prefix.length); // the same length: offsets stay
          b.write(evil, e.at + 46, 'utf8');
          b.write(evil, e.localOffset + 30, 'utf8');
        }
      },
      ['MISSING_RECORD', 'ZIP_BAD_STRUCTURE'],
    ],
  ];

  for (const [what, lie, codes] of lies) {
    it(`${what}: CORRUPT as a copy and as a source, never written, the rest synced`, async () => {
      // As a second copy of LoRA A (and the same lie over LoRA B's source).
      const liar = 'Zip_Lies/🎯_WIN_EXPERTS/LoRA_A_11e511.pt';
      await mkdir(join(dir, 'Zip_Lies/🎯_WIN_EXPERTS'), { recursive: true });
      const b = Buffer.from(await readFile(join(dir, STALE_A)));
      lie(b);
      await writeFile(join(dir, liar), b);
      const sb = Buffer.from(await readFile(join(dir, SOURCE_B)));
      lie(sb);
      await writeFile(join(dir, SOURCE_B), sb);
      const before = await snapshot(dir);
      const ws = await Workspace.open(dir);
      await ws.scan();
      for (const p of [liar, SOURCE_B]) {
        assert.equal(ws.status(p)?.status, 'CORRUPT', p);
        assert.ok(
          codes.includes(ws.entry(p)!.error!.code),
          `${p}: ${ws.entry(p)!.error!.code} ${ws.entry(p)!.error!.message}`,
        );
      }
      const r = await ws.sync(ws.plan({ force: true }), { reason: 'MANUAL' });
      const out = new Map(r.loras.flatMap((l) => l.copies).map((c) => [c.path, c]));
      assert.equal(out.get(liar)?.outcome, 'refused');
      assert.equal(out.get(STALE_B)?.outcome, 'refused', 'LoRA B has no readable source: blocked');
      assert.equal(out.get(STALE_A)?.outcome, 'synced');
      assert.equal(out.get(DRIFT_A)?.outcome, 'synced');
      const after = await snapshot(dir, (p) => p.startsWith('.lora-sync/'));
      for (const p of [liar, SOURCE_B, STALE_B]) assert.equal(after.get(p), before.get(p), `${p} was written`);
      assert.deepEqual(
        [...after.keys()].filter((p) => !before.has(p)),
        [],
        'new files appeared',
      );
      assert.ok(!existsSync(join(dir, '..', '..', '..', 'x')), 'a name in the zip was used as a path');
      addFigure(SEC, 'zip lies', 1);
    });
  }

  /**
   * A torch-shaped zip whose storages are DEFLATE records of zeros, declared honestly: `records` of
   * `each` bytes inflate from a file of about each/1000 bytes apiece.
   */
  async function deflateBomb(path: string, records: number, each: number): Promise<void> {
    const b = new TreeBuilder();
    const params: Array<[N.PyNode, N.PyNode]> = [];
    for (let i = 0; i < records; i++)
      params.push([N.str(`layers.${i}.lora_A`), b.tensor('float32', [each / 4], new Uint8Array(0))]);
    const root = N.dict([
      [N.str('lora_params'), N.dict(params)],
      [
        N.str('metadata'),
        N.dict([
          [N.str('id'), N.str('lora_a')],
          [N.str('name'), N.str('LoRA_A')],
        ]),
      ],
    ]);
    const zero = Buffer.alloc(1 << 20);
    let deflated: Buffer[] = [];
    const d = zlib.createDeflateRaw({ level: 9 });
    d.on('data', (c: Buffer) => deflated.push(c));
    let crc = 0;
    for (let done = 0; done < each; done += zero.length) {
      d.write(zero);
      crc = zlib.crc32(zero, crc);
    }
    await new Promise<void>((r) => d.end(r));
    const stream = Buffer.concat(deflated);
    deflated = [];
    const prefix = 'LoRA_A_b0b0b0';
    const entries: Array<{ name: string; data: Buffer; method: number; crc: number; usize: number }> = [
      { name: `${prefix}/data.pkl`, data: encodePickle(root), method: 0, crc: 0, usize: 0 },
      ...Array.from({ length: records }, (_, i) => ({
        name: `${prefix}/data/${i}`,
        data: stream,
        method: 8,
        crc,
        usize: each,
      })),
      { name: `${prefix}/version`, data: Buffer.from('3\n'), method: 0, crc: 0, usize: 2 },
    ];
    for (const e of entries)
      if (e.method === 0) {
        e.crc = zlib.crc32(e.data);
        e.usize = e.data.length;
      }
    const fh = await open(path, 'w');
    let off = 0;
    const central: Buffer[] = [];
    for (const e of entries) {
      const name = Buffer.from(e.name);
      const h = Buffer.alloc(30);
      h.writeUInt32LE(0x04034b50, 0);
      h.writeUInt16LE(20, 4);
      h.writeUInt16LE(0x800, 6);
      h.writeUInt16LE(e.method, 8);
      h.writeUInt32LE(e.crc >>> 0, 14);
      h.writeUInt32LE(e.data.length, 18);
      h.writeUInt32LE(e.usize, 22);
      h.writeUInt16LE(name.length, 26);
      await fh.write(Buffer.concat([h, name, e.data]));
      const c = Buffer.alloc(46);
      c.writeUInt32LE(0x02014b50, 0);
      c.writeUInt16LE(20, 4);
      c.writeUInt16LE(20, 6);
      c.writeUInt16LE(0x800, 8);
      c.writeUInt16LE(e.method, 10);
      c.writeUInt32LE(e.crc >>> 0, 16);
      c.writeUInt32LE(e.data.length, 20);
      c.writeUInt32LE(e.usize, 24);
      c.writeUInt16LE(name.length, 28);
      c.writeUInt32LE(off, 42);
      central.push(c, name);
      off += 30 + name.length + e.data.length;
    }
    const cd = Buffer.concat(central);
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(entries.length, 8);
    end.writeUInt16LE(entries.length, 10);
    end.writeUInt32LE(cd.length, 12);
    end.writeUInt32LE(off, 16);
    await fh.write(Buffer.concat([cd, end]));
    await fh.close();
  }

  /** Opens and fingerprints `file` in a fresh process; its outcome and its peak resident memory. */
  function openInChild(file: string): { outcome: string; peakMb: number } {
    const code = `
      const { openCheckpoint } = require(${JSON.stringify(join(REPO, 'server/src/formats/checkpoint'))});
      const { fingerprintCheckpoint } = require(${JSON.stringify(join(REPO, 'server/src/formats/fingerprint'))});
      (async () => {
        let outcome;
        try { const c = await openCheckpoint(process.argv[1]); await fingerprintCheckpoint(c); await c.close(); outcome = 'read'; }
        catch (e) { outcome = (e.name || 'Error') + ' ' + (e.code || '') + ' ' + e.message; }
        const hwm = /VmHWM:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'));
        console.log(JSON.stringify({ outcome, peakMb: hwm ? Number(hwm[1]) / 1024 : -1 }));
      })();`;
    const r = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', code, file], {
      encoding: 'utf8',
      cwd: REPO,
      maxBuffer: 1 << 20,
    });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { outcome: string; peakMb: number };
  }

  it('a deflate bomb (8 storages of 128 MiB of zeros, a 1 MB file) is refused before it is inflated; memory stays bounded', async () => {
    const bomb = join(scratch, 'bomb.pt');
    await deflateBomb(bomb, 8, 128 << 20);
    const size = readFileSync(bomb).length;
    const r = openInChild(bomb);
    console.log(
      `      ${Math.round(size / 1024)} KiB file declaring ${8 * 128} MiB: ${r.outcome}; peak resident ${Math.round(r.peakMb)} MB`,
    );
    assert.match(r.outcome, /^FormatError ZIP_UNSUPPORTED/);
    assert.ok(r.peakMb < 400, `peak resident memory ${r.peakMb} MB`);
    // In a workspace: a corrupt copy, reported, the scan goes on.
    await copyFile(bomb, join(dir, '💎_PERFECT_HYBRID_HALL', 'LoRA_A_b0b0b0.pt'));
    const st = await runCli(cli, ['status', '--json', '--root', dir]);
    const f = (JSON.parse(st.out) as { files: Array<{ path: string; status: string }> }).files.find(
      (x) => x.path === '💎_PERFECT_HYBRID_HALL/LoRA_A_b0b0b0.pt',
    );
    assert.equal(f?.status, 'CORRUPT');
    addFigure(SEC, 'zip bombs', 1);
    setFigure(SEC, 'deflate bomb peak memory (MB)', Math.round(r.peakMb));
  });

  it('one honest deflated storage under the bound is still read', async () => {
    const ok = join(scratch, 'deflated.pt');
    await deflateBomb(ok, 1, 16 << 20);
    assert.equal(openInChild(ok).outcome, 'read');
  });
});

describe('links and special files', function () {
  this.timeout(60_000);
  let dir: string;
  let outside: string;
  beforeEach(async () => {
    dir = await copyFixtureWorkspace('lora-link-');
    outside = await tempDir('lora-outside-');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
    await rm(outside, { recursive: true, force: true });
  });

  it('a copy that is a link to a file outside is never tracked nor written through; a link loop, a link to a device and a FIFO do not hang the scan', async () => {
    await copyFile(join(dir, STALE_A), join(outside, 'LoRA_A_0f0f0f.pt'));
    await symlink(join(outside, 'LoRA_A_0f0f0f.pt'), join(dir, '💎_PERFECT_HYBRID_HALL/LoRA_A_0f0f0f.pt'));
    await symlink(outside, join(dir, 'linked_team')); // a folder link: its files are outside
    await symlink(dir, join(dir, 'loop')); // a loop for anything that follows links
    await symlink('/dev/zero', join(dir, '💎_PERFECT_HYBRID_HALL/LoRA_A_0e0e0e.pt')); // an endless file
    execFileSync('mkfifo', [join(dir, '💎_PERFECT_HYBRID_HALL/LoRA_A_0d0d0d.pt')]); // a read would block forever
    const before = await readFile(join(outside, 'LoRA_A_0f0f0f.pt'));
    const t0 = performance.now();
    const ws = await Workspace.open(dir);
    await ws.scan();
    const r = await ws.report();
    assert.ok(performance.now() - t0 < 10_000, 'the scan took too long');
    const odd = r.files.filter(
      (f) =>
        f.path.startsWith('loop/') ||
        f.path.startsWith('linked_team/') ||
        /LoRA_A_0(f0f0f|e0e0e|d0d0d)\.pt$/.test(f.path),
    );
    assert.deepEqual(odd, [], 'links, devices and FIFOs are not tracked');
    const res = await ws.sync(ws.plan({ force: true }), { reason: 'MANUAL' });
    assert.ok(res.synced > 0);
    assert.ok((await readFile(join(outside, 'LoRA_A_0f0f0f.pt'))).equals(before), 'the file outside is untouched');
    assert.deepEqual(await readdir(outside), ['LoRA_A_0f0f0f.pt'], 'nothing was created outside');
    // An explicit update of the link path (what the watcher does) is refused the same way.
    assert.deepEqual(
      await ws.update([
        join(dir, '💎_PERFECT_HYBRID_HALL/LoRA_A_0f0f0f.pt'),
        join(dir, '💎_PERFECT_HYBRID_HALL/LoRA_A_0d0d0d.pt'),
      ]),
      [],
    );
    addFigure(SEC, 'link cases', 5);
  });

  it('a state folder .lora-sync that is a link (or whose history or locks are) is refused with a clear error; nothing is written through it', async () => {
    const cli = await privateCli(outside);
    const target = join(outside, 'state');
    await mkdir(target);
    await symlink(target, join(dir, '.lora-sync'));
    const r = await runCli(cli, ['sync', '--all', '--json', '--root', dir]);
    assert.notEqual(r.code, 0);
    assert.match(r.out + r.err, /\.lora-sync is a symbolic link \(to .*state\)/);
    assert.doesNotMatch(r.out + r.err, /\bat .*\.js:\d+/, 'no stack trace');
    assert.deepEqual(await readdir(target), [], 'nothing was written through the link');
    assert.ok((await readFile(join(dir, STALE_A))).length > 0);
    // Status still works (its cache is not saved: that costs speed, never correctness).
    const st = await runCli(cli, ['status', '--json', '--root', dir]);
    assert.equal(st.code, 1, st.err);
    assert.ok(JSON.parse(st.out).files.length > 0);
    assert.deepEqual(await readdir(target), []);
    // A real state folder whose history file or locks folder is a link: the same.
    await rm(join(dir, '.lora-sync'));
    await mkdir(join(dir, '.lora-sync'));
    await writeFile(join(target, 'history.jsonl'), '');
    await symlink(join(target, 'history.jsonl'), join(dir, '.lora-sync', 'history.jsonl'));
    const ws = await Workspace.open(dir);
    await ws.scan();
    const res = await ws.sync(ws.plan(), { reason: 'MANUAL' });
    assert.ok(res.synced > 0, 'the copies are written');
    assert.match(res.historyError ?? '', /history could not be written/);
    assert.equal(await readFile(join(target, 'history.jsonl'), 'utf8'), '', 'nothing appended through the link');
    await rm(join(dir, '.lora-sync', 'locks'), { recursive: true, force: true });
    await mkdir(join(target, 'locks'));
    // Someone else's old, unreadable "lock" where the link points: not ours to delete.
    await writeFile(join(target, 'locks', 'Cargo.lock'), 'not a LoRA Sync lock');
    execFileSync('touch', ['-d', '1 hour ago', join(target, 'locks', 'Cargo.lock')]);
    await symlink(join(target, 'locks'), join(dir, '.lora-sync', 'locks'));
    await trainerStep(join(dir, '⭐_AKTIF_EN_IYILER/LoRA_A.pt'));
    await ws.scan();
    const res2 = await ws.sync(ws.plan(), { reason: 'MANUAL' });
    assert.equal(res2.synced, 0);
    assert.ok(
      res2.loras.some((l) => l.copies.some((c) => /symbolic link/.test(c.reason ?? ''))),
      JSON.stringify(res2.loras.map((l) => l.copies)),
    );
    assert.deepEqual(
      await readdir(join(target, 'locks')),
      ['Cargo.lock'],
      'nothing created or deleted through the link',
    );
    addFigure(SEC, 'link cases', 3);
  });
});

describe('metadata that looks like a path is never used as one', function () {
  this.timeout(60_000);
  it('ids, names, copy keys and our own sync record holding ../ and absolute paths: nothing is written outside the workspace', async () => {
    const box = await tempDir('lora-box-');
    const dir = join(box, 'ws');
    try {
      await cp(join(REPO, 'test', 'fixtures', 'workspace'), dir, { recursive: true });
      const tag = createHash('sha1').update(box).digest('hex').slice(0, 8);
      const evil = `../../../../../../../../tmp/lora-sync-meta-${tag}`;
      const set = (meta: PyDict, key: string, v: N.PyNode) => {
        const i = meta.entries.findIndex(([k]) => k.kind === 'str' && k.value === key);
        if (i >= 0) meta.entries[i] = [meta.entries[i][0], v];
        else meta.entries.push([N.str(key), v]);
      };
      // LoRA A: its source and two copies share the hostile id; the copies carry hostile keys.
      for (const rel of [
        '⭐_AKTIF_EN_IYILER/LoRA_A.pt',
        STALE_A,
        DRIFT_A,
        'İstanbul_Başakşehir/🎯_DRAW_EXPERTS/LoRA_A_0d0e0f.pt',
      ]) {
        const abs = join(dir, rel);
        await rewriteCheckpoint(abs, `${abs}.new`, (root) => {
          const meta = getKey(root, 'metadata') as PyDict;
          set(meta, 'id', N.str(`${evil}/id`));
          set(meta, 'name', N.str(`${evil}/name`));
          if (!rel.startsWith('⭐')) {
            set(meta, 'team', N.str(`/tmp/lora-sync-meta-${tag}/team`));
            set(meta, 'specialization_key', N.str(`${evil}/spec`));
            const info = getKey(meta, 'sync_info') as PyDict;
            set(
              info,
              'lora_sync',
              N.dict([
                [N.str('tensors'), N.str('0')],
                [N.str('alg'), N.str('../x')],
                [N.str('source'), N.str(`${evil}/source.pt`)],
              ]),
            );
          }
        });
        await rm(abs);
        await cp(`${abs}.new`, abs);
        await rm(`${abs}.new`);
      }
      const cli = await privateCli(box);
      const before = await listTree(box);
      for (const args of [
        ['status', '--json'],
        ['verify'],
        ['sync', '--all'],
        ['sync', '--all', '--force'],
        ['history'],
        ['stats'],
      ]) {
        const r = await runCli(cli, [...args, '--root', dir]);
        assert.ok(r.code === 0 || r.code === 1, `${args.join(' ')}: ${r.err}`);
      }
      const ws = await Workspace.open(dir);
      await ws.scan();
      assert.equal(ws.status(STALE_A)?.status, 'IN_SYNC', 'the LoRA with the hostile id was synced normally');
      assert.ok(!existsSync(`/tmp/lora-sync-meta-${tag}`), 'a path built from metadata was written');
      // What appeared is the engine's own state and the backups of forced copies, under their real paths.
      const added = (await listTree(box)).filter((p) => !before.includes(p));
      const allowed = /^ws\/\.lora-sync\/(history\.jsonl|index\.jsonl|locks\/?.*|backups\/[^/]+\/(.+))$/;
      for (const p of added) {
        const m = allowed.exec(p);
        assert.ok(m, `unexpected file ${p}`);
        if (m[2])
          assert.ok(
            before.includes(`ws/${m[2]}`) || before.some((b) => b.normalize('NFC') === `ws/${m[2]}`.normalize('NFC')),
            `a backup at a path that is not a workspace file: ${p}`,
          );
      }
      assert.deepEqual((await listTree(box)).filter(isTemp), []);
      addFigure(SEC, 'metadata path cases', 6);
    } finally {
      await rm(box, { recursive: true, force: true });
    }
  });
});
