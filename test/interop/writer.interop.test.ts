/**
 * Interop with real PyTorch (needs Debian's python3-torch at /usr/bin/python3; CI installs it):
 * files written by our writer — unchanged rewrites, metadata edits, subtrees moved from another
 * file, and the demo generator's LoRAs — load in torch.load with identical tensors (dtype included)
 * and exactly the metadata we wrote.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withCheckpoint, type Checkpoint } from '../../server/src/formats/checkpoint';
import { readTensorBytes } from '../../server/src/formats/fingerprint';
import { typedForm, type Typed } from '../../server/src/formats/pyValue';
import * as N from '../../server/src/formats/pickle/nodes';
import { type PyNode, getKey, mappingEntries } from '../../server/src/formats/pickle/nodes';
import { writeTorchCheckpoint, storageSourcesOf, torchPrefixFor } from '../../server/src/formats/torch/ptWriter';
import { atomicWrite } from '../../server/src/io/atomicWrite';
import { generateSeedWorkspace } from '../../server/src/demo/seedWorkspace';
import { PY, pyScript, requireTorch } from '../support/python';

const FIX = join(__dirname, '..', 'fixtures', 'torch');

interface Dump {
  meta?: Typed;
  tensors?: Array<{
    path: string;
    dtype: string;
    shape: number[];
    sha256: string;
    requires_grad: boolean;
    parameter: boolean;
  }>;
  error?: string;
}

function torchDump(files: string[]): Record<string, Dump> {
  const out = execFileSync(PY, [pyScript('torch_dump.py'), ...files], {
    encoding: 'utf8',
    maxBuffer: 256 << 20,
    env: { ...process.env, PYTHONHASHSEED: '0' },
  });
  return JSON.parse(out);
}

/** What torch should see: our typed form with tensors named by path, sets order-normalised. */
async function expectedOf(
  c: Checkpoint,
): Promise<{ meta: Typed; tensors: Array<{ path: string; dtype: string; shape: number[]; sha256: string }> }> {
  const tag = new Map<PyNode, Typed>();
  for (const t of c.tensors) tag.set(t.wrapper ?? t.node!, [t.parameter ? 'parameter' : 'tensor', t.path]);
  const tensors = [];
  for (const t of c.tensors)
    tensors.push({
      path: t.path,
      dtype: t.dtype,
      shape: t.shape,
      sha256: createHash('sha256')
        .update(await readTensorBytes(c, t))
        .digest('hex'),
    });
  return { meta: typedForm(c.root!, (n) => tag.get(n)), tensors };
}

async function write(path: string, root: PyNode, src: Checkpoint): Promise<void> {
  await atomicWrite(path, (fh) =>
    writeTorchCheckpoint(fh, { prefix: torchPrefixFor(path), root, storages: storageSourcesOf(src) }),
  );
}

function setKey(dictNode: PyNode, key: string, value: PyNode): void {
  const entries = mappingEntries(dictNode)!;
  const i = entries.findIndex(([k]) => k.kind === 'str' && k.value === key);
  if (i >= 0) entries[i] = [entries[i][0], value];
  else entries.push([N.str(key), value]);
}

describe('interop: our writer -> real torch.load', function () {
  this.timeout(300000);
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lora-interop-'));
    requireTorch();
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('every fixture rewritten by us (new path, new prefix) loads with the same tensors and metadata', async () => {
    const names = [
      'seed_source.pt',
      'seed_copy.pt',
      'dtypes.pt',
      'views.pt',
      'parameter.pt',
      'state_dict.pt',
      'scalars_empty.pt',
      'legacy.pt',
      'archive_prefix.pt',
      'nested_lora.pt',
      'big_metadata.pt',
      '⭐_AKTIF_EN_IYILER/LoRA_🎯_emoji.pt',
    ];
    const written: string[] = [];
    const expected = new Map<string, Awaited<ReturnType<typeof expectedOf>>>();
    for (const n of names) {
      await withCheckpoint(join(FIX, n), async (c) => {
        const out = join(dir, `rewritten_${n.replace(/\//g, '_')}`);
        await write(out, c.root!, c);
        written.push(out);
        expected.set(out, await expectedOf(c));
      });
    }
    const dump = torchDump(written);
    for (const f of written) {
      const d = dump[f];
      assert.equal(d.error, undefined, `${f}: ${d.error}`);
      const e = expected.get(f)!;
      assert.deepEqual(
        d.tensors!.map(({ path, dtype, shape, sha256 }) => ({ path, dtype, shape, sha256 })),
        e.tensors,
        f,
      );
      assert.deepEqual(normSets(d.meta!), normSets(e.meta), f);
    }
  });

  it('edited metadata (set a key, replace a subtree, move a node from another file) is exactly what torch reads', async () => {
    const out = join(dir, 'edited_copy.pt');
    await withCheckpoint(join(FIX, 'seed_source.pt'), async (src) => {
      await withCheckpoint(join(FIX, 'seed_copy.pt'), async (copy) => {
        // The sync's own edit: the source's tree, with the copy's per-copy keys moved in.
        const meta = getKey(src.root!, 'metadata')!;
        for (const k of ['team', 'specialization_key', 'score', 'match_count', 'exported_at'])
          setKey(meta, k, getKey(getKey(copy.root!, 'metadata')!, k)!);
        setKey(
          meta,
          'sync_info',
          N.dict([
            [N.str('last_sync_match'), N.int(51)],
            [N.str('sync_reason'), N.str('LEARNING_UPDATE')],
            [N.str('lora_sync'), N.dict([[N.str('tensors'), N.str('abc')]])],
          ]),
        );
        setKey(meta, 'temperament', N.tuple([N.float(1), N.int(-(2n ** 70n)), N.str('Fenerbahçe 🆚 Beşiktaş')]));
        await write(out, src.root!, src);
        const expected = await expectedOf(src);
        const d = torchDump([out])[out];
        assert.equal(d.error, undefined, d.error);
        assert.deepEqual(
          d.tensors!.map(({ path, dtype, shape, sha256 }) => ({ path, dtype, shape, sha256 })),
          expected.tensors,
        );
        assert.deepEqual(normSets(d.meta!), normSets(expected.meta));
        // and the values are the ones we set, read by torch
        const md = (d.meta as unknown as [string, Array<[Typed, Typed]>])[1].find(
          ([k]) => k[1] === 'metadata',
        )![1] as unknown as [string, Array<[Typed, Typed]>];
        const team = md[1].find(([k]) => k[1] === 'team')![1];
        assert.deepEqual(team, ['str', 'Manchester_United']);
        const temp = md[1].find(([k]) => k[1] === 'temperament')![1];
        assert.deepEqual(temp, [
          'tuple',
          [
            ['float', '3ff0000000000000'],
            ['int', (-(2n ** 70n)).toString()],
            ['str', 'Fenerbahçe 🆚 Beşiktaş'],
          ],
        ]);
      });
    });
  });

  it('the demo generator writes LoRAs torch loads (emoji folders, NFD names)', async () => {
    const ws = join(dir, 'ws');
    await mkdir(ws);
    const r = await generateSeedWorkspace(ws, { loras: 6, copies: 14, problems: {} });
    const files = r.files.map((f) => f.path);
    const dump = torchDump(files);
    for (const f of files) {
      assert.equal(dump[f].error, undefined, `${f}: ${dump[f].error}`);
      await withCheckpoint(f, async (c) => {
        const e = await expectedOf(c);
        assert.deepEqual(
          dump[f].tensors!.map(({ path, dtype, shape, sha256 }) => ({ path, dtype, shape, sha256 })),
          e.tensors,
          f,
        );
        assert.deepEqual(normSets(dump[f].meta!), normSets(e.meta), f);
      });
    }
    await copyFile(files[0], join(dir, 'keep.pt'));
  });
});

/** Python orders set items by repr, we by JSON text: compare sets as sorted multisets. */
function normSets(t: unknown): unknown {
  if (!Array.isArray(t)) return t;
  if (t[0] === 'set' && Array.isArray(t[1]))
    return [
      'set',
      (t[1] as unknown[])
        .map(normSets)
        .map((x) => JSON.stringify(x))
        .sort(),
    ];
  return t.map(normSets);
}
