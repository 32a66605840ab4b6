/**
 * tensorDiff: a copy compared with its source tensor by tensor, on files written by real torch.
 * The fixture workspace gives the statuses (equal copy, stale copy, shape, dtype, missing tensor);
 * a second pair is written by torch here (test/python/make_diff_pairs.py) with every dtype, NaN
 * and ±0 and inf cases, a strided view and a 6 MB tensor, and torch's own account of each
 * difference to compare with. The reads are checked to stay within the chunk size.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Checkpoint, openCheckpoint } from '../../server/src/formats/checkpoint';
import { DEFAULT_CONFIG } from '../../server/src/engine/config';
import { readEntry } from '../../server/src/engine/loraFile';
import { type DiffOptions, diffTensors, type TensorDiff } from '../../server/src/engine/tensorDiff';
import { hasTorch, PY, pyScript } from '../support/python';

const WS = join(__dirname, '..', 'fixtures', 'workspace');
const SRC_A = '⭐_AKTIF_EN_IYILER/LoRA_A.pt';
const SRC_B = '⭐_AKTIF_EN_IYILER/LoRA_B.pt';

/** Opens a copy and its source (as the index reads them) and diffs them; `reads` records every positional read's length. */
async function diff(dir: string, copy: string, source: string, opts: DiffOptions = {}, reads?: number[]) {
  const open: Checkpoint[] = [];
  try {
    const side = async (rel: string) => {
      const e = await readEntry(join(dir, rel), rel, DEFAULT_CONFIG);
      const c = await openCheckpoint(join(dir, rel));
      open.push(c);
      if (reads) {
        const read = c.fh.read.bind(c.fh) as (...a: unknown[]) => Promise<{ bytesRead: number }>;
        (c.fh as unknown as { read: unknown }).read = async (...a: unknown[]) => {
          reads.push(a[2] as number);
          return read(...a);
        };
      }
      return { c, tensors: e.tensors };
    };
    return await diffTensors(await side(copy), await side(source), opts);
  } finally {
    for (const c of open) await c.close();
  }
}

const byName = (ds: TensorDiff[]) => new Map(ds.map((d) => [d.name, d]));

describe('tensorDiff on the torch-written fixture workspace', () => {
  it('an IN_SYNC copy: every tensor equal from the digests alone, no byte read', async () => {
    const reads: number[] = [];
    const r = await diff(WS, '💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt', SRC_A, {}, reads);
    assert.deepEqual(
      r.tensors.map((t) => t.kind),
      ['equal', 'equal', 'equal', 'equal'],
    );
    assert.equal(r.bytesRead, 0);
    // The copies are small (read whole into memory by the checkpoint reader); the diff itself adds no read.
    assert.equal(reads.length, 0);
  });

  it("a STALE copy: every tensor differs, with torch's max |copy - source| and count", async () => {
    const r = await diff(WS, 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt', SRC_A, { chunkBytes: 64 });
    // From real torch on the committed fixture:
    //   (a.double() - b.double()).abs().max(), (a != b).sum() for each tensor of lora_params
    const want: Record<string, number> = {
      'layers.0.lora_A': 3.6665157079696655,
      'layers.0.lora_B': 2.6763240098953247,
      'layers.1.lora_A': 3.1542152166366577,
      'layers.1.lora_B': 4.332327723503113,
    };
    assert.equal(r.tensors.length, 4);
    for (const t of r.tensors) {
      assert.equal(t.kind, 'differs', t.name);
      assert.equal(t.compared, true, t.name);
      assert.equal(t.maxAbsDiff, want[t.name], t.name);
      assert.equal(t.differing, 64, t.name);
      assert.equal(t.numel, 64, t.name);
    }
    assert.equal(r.bytesRead, 4 * 2 * 256);
    assert.equal(r.notCompared, 0);
  });

  it('a shape change, a dtype change and a missing tensor are named, the other tensors equal', async () => {
    const shape = byName((await diff(WS, 'Manchester_United/🎯_WIN_EXPERTS/LoRA_B_b6b7b8.pt', SRC_B)).tensors);
    assert.equal(shape.get('layers.0.lora_A')!.kind, 'shape');
    assert.deepEqual(shape.get('layers.0.lora_A')!.source, { dtype: 'float32', shape: [4, 16] });
    assert.deepEqual([...shape.values()].filter((d) => d.kind === 'equal').length, 3);

    // This copy's folders are spelled NFD on disk (as macOS writes them).
    const dtype = byName(
      (await diff(WS, `${'Beşiktaş/🆚_VS_Galatasaray'.normalize('NFD')}/LoRA_B_b9babb.pt`, SRC_B)).tensors,
    );
    assert.equal(dtype.get('layers.1.lora_B')!.kind, 'dtype');
    assert.equal(dtype.get('layers.1.lora_B')!.source!.dtype, 'float32');

    const count = await diff(WS, '🏛️_NEWTON_HALL/LoRA_B_b3b4b5.pt', SRC_B);
    const missing = count.tensors.filter((d) => d.kind === 'missing');
    assert.deepEqual(
      missing.map((d) => d.name),
      ['layers.1.lora_B'],
    );
    assert.deepEqual(missing[0].source, { dtype: 'float32', shape: [16, 4] });
    assert.equal(count.bytesRead, 0);
  });

  it('over the read budget a differing tensor is reported from its digest, not compared', async () => {
    const r = await diff(WS, 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt', SRC_A, { budgetBytes: 1024 });
    assert.equal(r.tensors.filter((t) => t.compared).length, 2); // 2 × (256 + 256) bytes fit
    assert.equal(r.notCompared, 2);
    assert.equal(r.bytesRead, 1024);
    const skipped = r.tensors.filter((t) => !t.compared);
    for (const t of skipped) {
      assert.equal(t.kind, 'differs');
      assert.equal(t.maxAbsDiff, undefined);
      assert.match(t.note!, /budget/);
    }
    const all = await diff(WS, 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt', SRC_A, {
      budgetBytes: 1024,
      unlimited: true,
    });
    assert.equal(all.notCompared, 0);
  });
});

describe('tensorDiff on every dtype, written by torch', function () {
  this.timeout(120000);
  let dir: string;
  let want: Record<string, { kind: string; differing?: number; nan?: number; max?: number | 'inf' }>;

  before(async function () {
    // Needs real torch (CI installs python3-torch); skipped without it.
    if (!hasTorch()) this.skip();
    dir = await mkdtemp(join(tmpdir(), 'lora-diff-'));
    const p = spawnSync(PY, [pyScript('make_diff_pairs.py'), dir], { encoding: 'utf8' });
    assert.equal(p.status, 0, p.stderr);
    want = JSON.parse(p.stdout);
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('agrees with torch on every tensor: kind, differing elements, NaN on one side, max |difference|', async () => {
    const reads: number[] = [];
    const r = await diff(dir, 'copy.pt', 'source.pt', { chunkBytes: 4096 }, reads);
    const got = byName(r.tensors);
    assert.deepEqual([...got.keys()].sort(), Object.keys(want).sort());
    for (const [name, w] of Object.entries(want)) {
      const d = got.get(name)!;
      assert.equal(d.kind, w.kind, name);
      if (w.kind !== 'differs') continue;
      assert.equal(d.compared, true, name);
      assert.equal(d.differing, w.differing, name);
      assert.equal(d.nanMismatches ?? 0, w.nan ?? 0, name);
      if (name === 'complex64') assert.ok(Math.abs((d.maxAbsDiff as number) - (w.max as number)) < 1e-12, name);
      else assert.equal(d.maxAbsDiff, w.max, name);
    }
    // +0 against -0: the bytes (and digests) differ, no value does.
    assert.equal(got.get('signed_zero')!.differing, 0);
    assert.match(got.get('signed_zero')!.note!, /every value is equal/);
    assert.equal(got.get('inf')!.maxAbsDiff, 'inf');
    // Streamed: no single read of tensor bytes is larger than the chunk, although `big` is 6 MB.
    assert.ok(reads.length > 2 * (6_000_000 / 4096), `${reads.length} reads`);
    assert.ok(Math.max(...reads) <= 4096, `largest read ${Math.max(...reads)}`);
  });

  it('gives the same answer whatever the chunk size', async () => {
    const small = byName((await diff(dir, 'copy.pt', 'source.pt', { chunkBytes: 1000 })).tensors);
    const big = byName((await diff(dir, 'copy.pt', 'source.pt')).tensors);
    assert.deepEqual(small, big);
  });

  it('a strided view over the view limit is left to its digest', async () => {
    const r = byName((await diff(dir, 'copy.pt', 'source.pt', { maxViewBytes: 100 })).tensors);
    assert.equal(r.get('view')!.compared, false);
    assert.match(r.get('view')!.note!, /strided view/);
    assert.equal(r.get('big')!.compared, true);
  });
});
