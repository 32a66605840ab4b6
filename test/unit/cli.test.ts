/** `lora-sync inspect` as a user runs it (the built dist/cli.js): output, JSON schema, exit codes. */
import { strict as assert } from 'node:assert';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { generateSeedWorkspace } from '../../server/src/demo/seedWorkspace';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(__dirname, '..', '..');
const CLI = join(ROOT, 'dist', 'cli.js');
const FIX = join(ROOT, 'test', 'fixtures', 'torch');

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('lora-sync inspect (CLI)', () => {
  before(() => {
    if (!existsSync(CLI)) throw new Error('dist/cli.js is missing: run `npm run build` (npm test does)');
  });

  it('a sound source: exit 0, tensors and metadata in JSON with Python types kept', () => {
    const r = run('inspect', join(FIX, 'seed_source.pt'), '--json');
    assert.equal(r.code, 0, r.err);
    const j = JSON.parse(r.out);
    assert.equal(j.sound, true);
    assert.equal(j.format, 'torch-zip');
    assert.equal(j.prefix, 'seed_source');
    assert.deepEqual(
      j.tensors.map((t: { path: string }) => t.path),
      [
        'lora_params.layers.0.lora_A',
        'lora_params.layers.0.lora_B',
        'lora_params.layers.1.lora_A',
        'lora_params.layers.1.lora_B',
      ],
    );
    assert.equal(j.tensors[0].dtype, 'float32');
    const m = j.metadata.metadata;
    assert.deepEqual(m.shape, { $tuple: [4, 8] });
    assert.deepEqual(m.huge, { $int: '1180591620717411303424' });
    assert.equal(m.big_neg, -1099511627776);
    assert.deepEqual(m.tags, { $set: [1, 2, 3] });
    assert.deepEqual(m.created_at, { $datetime: '2025-12-04T10:30:00.123456' });
    // a float that is integral stays a float in the JSON text, so Python's json reads a float back
    assert.match(r.out, /"integral_float": 1\.0/);
    assert.match(r.out, /"life_energy": 1\.2/);
    assert.deepEqual(j.metadata.lora_params['layers.0.lora_A'].$tensor.shape, [8, 16]);
  });

  it('a reader that closes the pipe early (`| head`) ends the command quietly: no EPIPE stack trace', async function () {
    this.timeout(60000);
    const ws = await mkdtemp(join(tmpdir(), 'lora-pipe-'));
    try {
      // Enough files that the JSON (~0.7 kB a file, ~350 kB) overflows a pipe's 64 kB buffer many times.
      await generateSeedWorkspace(ws, { loras: 100, copies: 400 });
      const p = spawn(process.execPath, [CLI, 'status', '--json', '--all', '--timings', '--root', ws], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      p.stderr.on('data', (d) => (err += d));
      p.stdout.once('data', () => p.stdout.destroy()); // what `head -c 1` does
      const code = await new Promise<number | null>((resolve) => p.on('close', resolve));
      assert.doesNotMatch(err, /EPIPE|internal error|Unhandled/, err);
      // The command's own code, known before its report is written (1: this workspace has problems),
      // not SIGPIPE's 141; and --timings still says where the time went.
      assert.equal(code, 1, err);
      assert.match(err, /^timings \(wall ms\): .*; peak RSS [\d,]+ MB$/m);
    } finally {
      await rm(ws, { recursive: true, force: true });
    }
  });

  it('human output names format, CRC, safety and tensors', () => {
    const r = run('inspect', join(FIX, 'dtypes.pt'));
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /torch zip checkpoint/);
    assert.match(r.out, /CRC32: all records good/);
    assert.match(r.out, /bfloat16/);
    // Safety says one thing: sound, and nothing after it about code (a misplaced else once added UNSAFE).
    assert.match(r.out, /\n {2}safety: sound \(\d+ data-only globals\)\n {2}tensors/);
    assert.doesNotMatch(r.out, /UNSAFE|refuses/);
    const bad = run('inspect', join(FIX, 'unsafe_posix_system.pt'));
    assert.match(bad.out, /\n {2}safety: UNSAFE — torch\.load would run code from this file\n {4}posix\.system\n/);
    assert.doesNotMatch(bad.out, /safety: sound/);
  });

  it('unsafe file: exit 1, names the global, and never runs it', () => {
    const r = run('inspect', join(FIX, 'unsafe_posix_system.pt'), '--json');
    assert.equal(r.code, 1);
    const j = JSON.parse(r.out);
    assert.equal(j.safety.safe, false);
    assert.deepEqual(
      j.safety.unsafe.map((u: { global: string }) => u.global),
      ['posix.system'],
    );
  });

  it('corrupt files: exit 1 with the code and a message naming what is wrong, no stack trace', () => {
    const t = run('inspect', join(FIX, 'truncated.pt'));
    assert.equal(t.code, 1);
    assert.match(t.out, /CORRUPT \(ZIP_TRUNCATED\)/);
    assert.doesNotMatch(t.out + t.err, /\bat .*\.js:\d+/);
    const c = run('inspect', join(FIX, 'bad_crc.pt'), '--json');
    assert.equal(c.code, 1);
    assert.deepEqual(
      JSON.parse(c.out).crc.failures.map((f: { record: string }) => f.record),
      ['seed_source/data/0'],
    );
    const e = run('inspect', join(FIX, 'empty.pt'), '--json');
    assert.equal(e.code, 1);
    assert.equal(JSON.parse(e.out).error.code, 'EMPTY_FILE');
  });

  it('--json is valid JSON for every fixture, sound or not (the legacy format has no prefix: the key is left out)', function () {
    this.timeout(120_000); // ~20 CLI processes in a row: room for a busy machine, not a speed check
    const files = readdirSync(FIX).filter((f) => f.endsWith('.pt'));
    assert.ok(files.length >= 15);
    for (const f of files) {
      const r = run('inspect', join(FIX, f), '--json');
      assert.ok(r.code === 0 || r.code === 1, `${f}: exit ${r.code} ${r.err}`);
      const j = JSON.parse(r.out);
      assert.equal(j.file, join(FIX, f));
    }
    const legacy = JSON.parse(run('inspect', join(FIX, 'legacy.pt'), '--json').out);
    assert.equal(legacy.format, 'torch-legacy');
    assert.equal('prefix' in legacy, false);
  });

  it('--version names the digest algorithm and the hashers in use', () => {
    const r = run('--version');
    assert.equal(r.code, 0);
    assert.match(
      r.out,
      /^lora-sync \d+\.\d+\.\d+ \(digests xxh64-4MiB-leaves\+sha256-128, hashing (native|portable)\)\n$/,
    );
  });

  it('usage errors exit 2', () => {
    assert.equal(run('inspect').code, 2);
    assert.equal(run('inspect', join(FIX, 'no-such-file.pt')).code, 2);
    assert.equal(run('inspect', FIX).code, 2);
    assert.equal(run('frobnicate').code, 2);
    assert.equal(run('inspect', join(FIX, 'seed_source.pt'), '--bogus').code, 2);
  });
});
