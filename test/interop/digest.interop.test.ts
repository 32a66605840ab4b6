/**
 * Our tensor digests against an independent implementation in Python (test/python/digest_dump.py:
 * python3-xxhash and hashlib over the bytes real torch.load gives): every sound torch fixture, the
 * seed-like workspace, and a file torch.save wrote with multi-leaf tensors, views and odd dtypes.
 * Both hashing backends (native and portable) are checked.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fg from 'fast-glob';
import { PY, pyScript } from '../support/python';

const ROOT = join(__dirname, '..', '..');

interface Inspected {
  sound: boolean;
  hash_backend: string;
  tensors?: Array<{ path: string; digest: string }>;
}

function inspect(file: string, backend: 'native' | 'portable'): Inspected {
  let out: string;
  try {
    out = execFileSync(process.execPath, [join(ROOT, 'dist', 'cli.js'), 'inspect', file, '--json'], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      env: { ...process.env, NODE_OPTIONS: '', LORA_SYNC_HASH_BACKEND: backend === 'portable' ? 'portable' : '' },
    });
  } catch (e) {
    out = (e as { stdout?: string }).stdout ?? '';
  }
  return JSON.parse(out) as Inspected;
}

describe('interop: tensor digests match an independent Python implementation', function () {
  this.timeout(300_000);
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lora-digest-'));
    execFileSync(PY, [pyScript('digest_dump.py'), 'write', join(dir, 'digest_cases.pt')]);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('every tensor of every sound file, with both hashing backends', async () => {
    const fixtures = (await readdir(join(ROOT, 'test', 'fixtures', 'torch')))
      .filter((f) => f.endsWith('.pt'))
      .map((f) => join(ROOT, 'test', 'fixtures', 'torch', f));
    const workspace = (await fg('**/*.pt', { cwd: join(ROOT, 'test', 'fixtures', 'workspace'), absolute: true })).slice(
      0,
      40,
    );
    const candidates = [join(dir, 'digest_cases.pt'), ...fixtures, ...workspace];
    // Only files our reader calls sound go to torch.load (the unsafe fixtures would run code there).
    const ours = new Map<string, Inspected>();
    for (const f of candidates) {
      const r = inspect(f, 'native');
      if (r.sound && r.tensors?.length) ours.set(f, r);
    }
    const files = [...ours.keys()].filter((f) => !/legacy|torchscript/.test(f)); // torch.load rebuilds those differently
    assert.ok(files.length >= 20, `only ${files.length} sound files to compare`);
    const py = JSON.parse(
      execFileSync(PY, [pyScript('digest_dump.py'), 'dump', ...files], {
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      }),
    ) as Record<string, Array<{ path: string; digest: string }>>;
    let compared = 0;
    for (const f of files) {
      const expected = new Map(py[f].map((t) => [t.path, t.digest]));
      for (const backend of ['native', 'portable'] as const) {
        const r = backend === 'native' ? ours.get(f)! : inspect(f, 'portable');
        assert.equal(r.hash_backend, backend);
        assert.equal(r.tensors!.length, expected.size, `${f}: tensor count`);
        for (const t of r.tensors!) {
          assert.equal(t.digest, expected.get(t.path), `${f} ${t.path} (${backend})`);
          compared++;
        }
      }
    }
    const cases = py[join(dir, 'digest_cases.pt')];
    assert.equal(cases.length, 10, 'the torch-written cases file has its ten tensors');
    assert.ok(compared > 100, `${compared} digests compared`);
  });
});
