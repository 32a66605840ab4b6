/**
 * The checkpoint model against ground truth printed by real torch (test/fixtures/torch/manifest.json,
 * written by test/python/generate_fixtures.py): formats, records, every tensor's dtype, shape,
 * stride, storage, bytes, the whole metadata tree, unsafe globals, corrupt files; and the writer's
 * byte-identical round trip of files torch wrote.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openCheckpoint, withCheckpoint } from '../../server/src/formats/checkpoint';
import {
  fingerprintCheckpoint,
  readTensorBytes,
  metadataDigest,
  tensorTypedLookup,
} from '../../server/src/formats/fingerprint';
import { typedForm, type Typed } from '../../server/src/formats/pyValue';
import { FormatError } from '../../server/src/formats/errors';
import { decodePickle } from '../../server/src/formats/pickle/decoder';
import { encodePickle } from '../../server/src/formats/pickle/encoder';
import { getKey, type PyNode } from '../../server/src/formats/pickle/nodes';
import { writeTorchCheckpoint, storageSourcesOf } from '../../server/src/formats/torch/ptWriter';

const FIX = join(__dirname, '..', 'fixtures', 'torch');
interface ManifestTensor {
  path: string;
  dtype: string;
  shape: number[];
  stride: number[];
  storage_offset: number;
  storage_key: string;
  numel_storage: number;
  sha256: string;
  requires_grad: boolean;
  parameter: boolean;
}
interface ManifestEntry {
  file: string;
  format?: string;
  prefix?: string | null;
  records?: string[] | null;
  tensors?: ManifestTensor[];
  meta?: Typed;
  expect?: string;
  globals?: string[];
  ordereddict_metadata?: Typed;
  legacy_storage_keys?: string[];
}
const manifest: { fixtures: ManifestEntry[] } = JSON.parse(
  require('node:fs').readFileSync(join(FIX, 'manifest.json'), 'utf8'),
);
const loadable = manifest.fixtures.filter((f) => !f.expect);

async function expectFormatError(p: Promise<unknown>, codes: string[]): Promise<FormatError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof FormatError, `expected a FormatError, got ${(e as Error)?.stack}`);
    assert.ok(codes.includes(e.code), `code ${e.code} not in ${codes.join(',')}: ${e.message}`);
    return e;
  }
  assert.fail('expected a FormatError');
}

describe('checkpoint model vs torch ground truth', () => {
  it('the manifest covers what the issue names', () => {
    const files = manifest.fixtures.map((f) => f.file);
    for (const f of [
      'seed_source.pt',
      'dtypes.pt',
      'views.pt',
      'parameter.pt',
      'state_dict.pt',
      'legacy.pt',
      'archive_prefix.pt',
      'scalars_empty.pt',
    ]) {
      assert.ok(files.includes(f), f);
    }
    assert.ok(loadable.length >= 14);
  });

  for (const f of loadable) {
    it(`${f.file}: format, records, tensors, bytes and metadata`, async () => {
      await withCheckpoint(join(FIX, f.file), async (c) => {
        const fmt = { zip: 'torch-zip', legacy: 'torch-legacy', torchscript: 'torchscript' }[f.format!];
        assert.equal(c.format, fmt);
        if (f.prefix) assert.equal(c.prefix, f.prefix);
        if (f.records)
          assert.deepEqual(
            c.records!.map((r) => r.name),
            f.records,
          );
        if (f.format === 'torchscript') {
          // torch.load hands these to torch.jit.load, which returns a module (the manifest lists no tensors);
          // we still see the tensors kept in the module's pickled state, and the TorchScript classes it names.
          assert.deepEqual(
            c.tensors.map((t) => t.path),
            ['$state.scale', '$state.offset'],
          );
          assert.ok(c.globals.some((g) => g.module.startsWith('__torch__')));
          return;
        }
        assert.deepEqual(c.unsafe, []);
        const expected = f.tensors!;
        assert.deepEqual(
          c.tensors.map((t) => t.path),
          expected.map((t) => t.path),
        );
        for (let i = 0; i < expected.length; i++) {
          const e = expected[i];
          const t = c.tensors[i];
          assert.equal(t.dtype, e.dtype, e.path);
          assert.deepEqual(t.shape, e.shape, e.path);
          assert.deepEqual(t.stride, e.stride, e.path);
          assert.equal(t.requiresGrad, e.requires_grad, `${e.path} requires_grad`);
          assert.equal(t.parameter, e.parameter, `${e.path} parameter`);
          if (f.format === 'zip') {
            assert.equal(t.storageOffset, e.storage_offset, e.path);
            assert.equal(t.storage.key, e.storage_key, e.path);
            assert.equal(t.storage.numel, e.numel_storage, e.path);
          }
          const bytes = await readTensorBytes(c, t);
          assert.equal(createHash('sha256').update(bytes).digest('hex'), e.sha256, `${f.file} ${e.path} bytes`);
        }
        // Metadata: the whole tree in the manifest's exact typed form.
        const paths = new Map<PyNode, Typed>();
        for (const t of c.tensors) paths.set(t.wrapper ?? t.node!, [t.parameter ? 'parameter' : 'tensor', t.path]);
        assert.deepEqual(
          typedForm(c.root!, (n) => paths.get(n)),
          f.meta,
        );
        const fp = await fingerprintCheckpoint(c);
        assert.deepEqual(fp.crcFailures, []);
        assert.equal(fp.tensors.length, expected.length);
      });
    });
  }

  it('views of one storage digest their own region; equal bytes give equal digests', async () => {
    await withCheckpoint(join(FIX, 'views.pt'), async (c) => {
      const fp = await fingerprintCheckpoint(c);
      const by = new Map(fp.tensors.map((t) => [t.path, t.digest]));
      assert.equal(new Set(by.values()).size, by.size, 'every view has its own digest');
      assert.equal(c.tensors.find((t) => t.path === 't')!.contiguous, false);
    });
    // seed_copy has the same tensors as seed_source: same digests; its metadata differs only by copy keys.
    const a = await withCheckpoint(join(FIX, 'seed_source.pt'), async (c) => ({
      fp: await fingerprintCheckpoint(c),
      md: await metadataDigest(getKey(c.root!, 'metadata')!, ['sync_info'], tensorTypedLookup(c)),
    }));
    const b = await withCheckpoint(join(FIX, 'seed_copy.pt'), async (c) => ({
      fp: await fingerprintCheckpoint(c),
      md: await metadataDigest(
        getKey(c.root!, 'metadata')!,
        ['sync_info', 'team', 'specialization_key', 'score', 'match_count', 'exported_at'],
        tensorTypedLookup(c),
      ),
      mdAll: await metadataDigest(getKey(c.root!, 'metadata')!, ['sync_info'], tensorTypedLookup(c)),
    }));
    assert.deepEqual(
      a.fp.tensors.map((t) => t.digest),
      b.fp.tensors.map((t) => t.digest),
    );
    assert.equal(a.md, b.md);
    assert.notEqual(a.md, b.mdAll);
  });

  it('dtype counts in a digest: same values as float32 and float64 are different tensors', async () => {
    await withCheckpoint(join(FIX, 'dtypes.pt'), async (c) => {
      const fp = await fingerprintCheckpoint(c);
      assert.equal(new Set(fp.tensors.map((t) => `${t.dtype}:${t.digest}`)).size, fp.tensors.length);
    });
  });

  it('unsafe files list the globals that would run, and nothing else', async () => {
    for (const f of manifest.fixtures.filter((x) => x.expect === 'unsafe')) {
      await withCheckpoint(join(FIX, f.file), async (c) => {
        assert.deepEqual(
          c.unsafe.map((u) => u.global),
          f.globals!.map((g) => g.replace(' ', '.')),
          f.file,
        );
      });
    }
  });

  it('broken files give typed errors or CRC findings', async () => {
    await expectFormatError(openCheckpoint(join(FIX, 'empty.pt')), ['EMPTY_FILE']);
    await expectFormatError(openCheckpoint(join(FIX, 'not_a_checkpoint.pt')), ['NOT_A_CHECKPOINT']);
    await expectFormatError(openCheckpoint(join(FIX, 'truncated.pt')), ['ZIP_TRUNCATED', 'ZIP_BAD_STRUCTURE']);
    await withCheckpoint(join(FIX, 'bad_crc.pt'), async (c) => {
      const fp = await fingerprintCheckpoint(c);
      assert.deepEqual(
        fp.crcFailures.map((x) => x.record),
        ['seed_source/data/0'],
      );
    });
  });

  it('every truncation of a real checkpoint is a typed error, never a crash', async function () {
    this.timeout(120000);
    const full = await readFile(join(FIX, 'seed_source.pt'));
    const dir = await mkdtemp(join(tmpdir(), 'lora-trunc-'));
    try {
      const p = join(dir, 'x.pt');
      let typed = 0;
      for (let n = 0; n < full.length; n++) {
        const fh = await open(p, 'w');
        await fh.write(full, 0, n, 0);
        await fh.close();
        try {
          const c = await openCheckpoint(p);
          try {
            await fingerprintCheckpoint(c);
          } finally {
            await c.close();
          }
          assert.fail(`truncated to ${n} bytes and still opened`);
        } catch (e) {
          assert.ok(e instanceof FormatError, `length ${n}: ${(e as Error).stack}`);
          typed++;
        }
      }
      assert.equal(typed, full.length);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('writer: byte-identical round trips of files torch wrote', () => {
  for (const f of loadable.filter((x) => x.format === 'zip')) {
    it(`${f.file}: decode+encode of data.pkl, and the whole file rewritten`, async () => {
      const original = await readFile(join(FIX, f.file));
      const dir = await mkdtemp(join(tmpdir(), 'lora-rt-'));
      try {
        await withCheckpoint(join(FIX, f.file), async (c) => {
          const pklRec = c.records!.find((r) => r.name.endsWith('/data.pkl'))!;
          const pkl = await c.zip!.read(pklRec);
          assert.ok(encodePickle(decodePickle(pkl).root).equals(pkl), 'data.pkl re-encodes to the same bytes');
          const out = join(dir, 'out.pt');
          const fh = await open(out, 'w');
          try {
            await writeTorchCheckpoint(fh, { prefix: c.prefix!, root: c.root!, storages: storageSourcesOf(c) });
          } finally {
            await fh.close();
          }
          const written = await readFile(out);
          assert.equal(written.length, original.length);
          assert.ok(written.equals(original), 'rewritten file is byte-identical');
        });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
