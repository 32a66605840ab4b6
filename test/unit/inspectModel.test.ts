/**
 * The inspector's view model on the torch-written fixture workspace: a source, a STALE, a DIVERGED
 * and a drifted copy, CORRUPT files (truncated, CRC), UNSAFE files (their globals listed, nothing
 * run: a torch-written file whose pickle would create a file shows that it did not), a file the
 * index does not track, and a text file named .pt. The model is plain JSON without tensor bytes.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors } from '../../server/src/formats/safetensors';
import { copyFixtureWorkspace } from '../support/files';
import { Workspace } from '../../server/src/engine/workspace';
import { InspectError, inspectWorkspaceFile } from '../../server/src/lsp/views/inspectModel';
import type { InspectModel, MetaNode } from '../../server/src/protocol/inspect';
import { hasTorch, PY } from '../support/python';

const SRC_A = '⭐_AKTIF_EN_IYILER/LoRA_A.pt';
const STALE = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';
const DIVERGED = 'İstanbul_Başakşehir/🎯_DRAW_EXPERTS/LoRA_A_0d0e0f.pt';
const DRIFT = '🏛️_NEWTON_HALL/LoRA_A_7a8b9c.pt';
const TRUNCATED = '💎_PERFECT_HYBRID_HALL/LoRA_F_f0f1f2.pt';
const BAD_CRC = '🏛️_NEWTON_HALL/LoRA_F_f3f4f5.pt';
const UNSAFE_COPY = 'Beşiktaş/🆚_VS_Galatasaray/LoRA_G_a0b0c0.pt';
const UNSAFE_SOURCE = '⭐_AKTIF_EN_IYILER/LoRA_E.pt';

/** A child of a tree node by key path. */
function at(n: MetaNode | null, ...keys: string[]): MetaNode {
  let cur = n!;
  for (const k of keys) {
    const next = cur.children?.find((c) => c.key === k);
    assert.ok(next, `no ${k} under ${cur.key ?? '<root>'}`);
    cur = next;
  }
  return cur;
}

describe('inspector view model (inspectWorkspaceFile)', function () {
  this.timeout(60000);
  let dir: string;
  let ws: Workspace;
  const inspect = (rel: string) => inspectWorkspaceFile(ws, ws.abs(rel));

  before(async () => {
    dir = await copyFixtureWorkspace('lora-inspect-');
    ws = await Workspace.open(dir);
    ws.setReadOnly();
    await ws.scan();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a source: identity, role, status, tensors with digests, fitness_history (numpy floats too), metadata tree', async () => {
    const m = await inspect(SRC_A);
    assert.equal(m.path, SRC_A);
    assert.equal(m.format, 'torch-zip');
    assert.deepEqual(m.identity, { id: 'lora_a', name: 'LoRA_A', from: 'metadata' });
    assert.equal(m.role, 'source');
    assert.equal(m.status, 'SOURCE');
    assert.equal(m.tracked, true);
    assert.equal(m.source, null);
    assert.equal(m.diff, null);
    assert.deepEqual(
      m.tensors.map((t) => [t.name, t.dtype, t.shape, t.numel, t.bytes]),
      [
        ['layers.0.lora_A', 'float32', [4, 16], 64, 256],
        ['layers.0.lora_B', 'float32', [16, 4], 64, 256],
        ['layers.1.lora_A', 'float32', [4, 16], 64, 256],
        ['layers.1.lora_B', 'float32', [16, 4], 64, 256],
      ],
    );
    assert.deepEqual(
      m.tensors.map((t) => t.digest),
      ws.entry(SRC_A)!.tensors.map((t) => t.digest),
    );
    // [0.1, 0.2, np.float64(0.3)] in the file
    assert.deepEqual(m.fitness, { path: 'metadata.fitness_history', values: [0.1, 0.2, 0.3], total: 3 });
    assert.equal(at(m.metadata, 'lora_params').value, '4 tensors (see Tensors)');
    assert.equal(at(m.metadata, 'lora_params').children, undefined);
    assert.equal(at(m.metadata, 'metadata', 'fitness_history', '2').type, 'numpy.float64');
    assert.equal(at(m.metadata, 'metadata', 'sync_info').mark, 'ignored');
    assert.ok(!at(m.metadata, 'metadata').children!.some((c) => c.mark === 'copy'), 'a source holds no copy keys');
    assert.deepEqual(m.syncInfo, {
      lastSyncMatch: 50,
      lastSyncTime: '2025-12-04T10:00:00',
      reason: 'LEARNING_UPDATE',
      byLoraSync: false,
    });
  });

  it('a STALE copy: status in words, its source, per-tensor differences, its own keys marked with their Python values', async () => {
    const m = await inspect(STALE);
    assert.equal(m.role, 'copy');
    assert.equal(m.status, 'STALE');
    assert.match(
      m.message,
      /^stale: 4 of 4 tensors differ from ⭐_AKTIF_EN_IYILER\/LoRA_A\.pt, last synced at match 45, source at match 50$/,
    );
    assert.deepEqual(m.source, { path: SRC_A, abs: join(dir, SRC_A), status: 'SOURCE' });
    assert.deepEqual(
      m.issues.map((i) => i.type),
      ['PARAM_MISMATCH', 'PARAM_MISMATCH', 'PARAM_MISMATCH', 'PARAM_MISMATCH'],
    );
    assert.equal(m.diff!.against, SRC_A);
    assert.deepEqual(m.diff!.counts, { equal: 0, differs: 4, shape: 0, dtype: 0, missing: 0, extra: 0 });
    assert.equal(m.diff!.bytesRead, 2048);
    // real torch: (copy.double() - source.double()).abs().max()
    assert.deepEqual(
      m.tensors.map((t) => t.diff!.maxAbsDiff),
      [3.6665157079696655, 2.6763240098953247, 3.1542152166366577, 4.332327723503113],
    );
    const meta = at(m.metadata, 'metadata');
    const marked = meta.children!.filter((c) => c.mark === 'copy').map((c) => c.key);
    assert.deepEqual(marked, ['team', 'specialization_key', 'score', 'match_count', 'exported_at']);
    assert.equal(at(meta, 'score').type, 'tuple');
    assert.deepEqual(
      at(meta, 'match_count').children!.map((c) => [c.key, c.type, c.value]),
      [
        ['0', 'int', '12'],
        ['1', 'int', '7'],
        ['38', 'int', '1'],
      ],
    );
    assert.deepEqual([at(meta, 'exported_at').type, at(meta, 'exported_at').value], ['None', 'None']);
    assert.deepEqual(m.fitness!.values, [0.1, 0.2]);
    assert.equal(m.syncInfo!.lastSyncMatch, 45);
  });

  it('a DIVERGED copy: the differences are values, compared', async () => {
    const m = await inspect(DIVERGED);
    assert.equal(m.status, 'DIVERGED');
    assert.match(m.message, /^diverged: 4 of 4 tensors differ/);
    assert.equal(m.diff!.counts.differs, 4);
    for (const t of m.tensors) {
      assert.equal(t.diff!.compared, true, t.name);
      assert.equal(t.diff!.differing, 64, t.name);
      assert.ok(typeof t.diff!.maxAbsDiff === 'number' && t.diff!.maxAbsDiff > 0, t.name);
    }
  });

  it('a drifted copy: equal tensors, the metadata keys that differ marked', async () => {
    const m = await inspect(DRIFT);
    assert.equal(m.status, 'METADATA_DRIFT');
    assert.equal(m.diff!.counts.equal, 4);
    assert.equal(m.diff!.bytesRead, 0);
    const meta = at(m.metadata, 'metadata');
    assert.deepEqual(
      meta
        .children!.filter((c) => c.mark === 'differs')
        .map((c) => c.key)
        .sort(),
      ['hand_note', 'life_energy'],
    );
  });

  it('CORRUPT files: a truncated one has a typed error and nothing else; a CRC failure still shows what is inside', async () => {
    const t = await inspect(TRUNCATED);
    assert.equal(t.status, 'CORRUPT');
    assert.equal(t.role, 'unreadable');
    assert.equal(t.place, 'copy');
    assert.match(t.error!.code, /^ZIP_/);
    assert.ok(t.error!.message.length > 10);
    assert.deepEqual(t.tensors, []);
    assert.equal(t.metadata, null);
    assert.equal(t.diff, null);
    assert.equal(t.identity.id, 'lora_f'); // from the LoRA its name attaches it to
    assert.equal(t.source!.path, '⭐_AKTIF_EN_IYILER/LoRA_F.pt');

    const c = await inspect(BAD_CRC);
    assert.equal(c.status, 'CORRUPT');
    assert.equal(c.error!.code, 'CRC_MISMATCH');
    assert.match(c.error!.message, /LoRA_F_f3f4f5\/data\/0/);
    assert.equal(c.tensors.length, 4);
    assert.ok(
      c.tensors.every((r) => r.digest === undefined),
      'no digest for bytes that failed their CRC',
    );
    assert.equal(at(c.metadata, 'metadata', 'team').mark, 'copy');
    assert.equal(c.diff, null);
  });

  it('UNSAFE files: the globals listed with why, the call shown inert in the tree, the tensors still compared', async () => {
    const m = await inspect(UNSAFE_COPY);
    assert.equal(m.status, 'UNSAFE');
    assert.equal(m.safety.safe, false);
    assert.deepEqual(
      m.safety.unsafe.map((u) => u.global),
      ['__builtin__.eval'],
    );
    assert.match(m.safety.unsafe[0].detail, /torch\.load would import and may call/);
    assert.match(m.message, /^unsafe: torch\.load would run code/);
    const walk = (n: MetaNode): MetaNode[] => [n, ...(n.children ?? []).flatMap(walk)];
    const call = walk(m.metadata!).find((n) => n.type === '__builtin__.eval')!;
    assert.ok(call, 'the eval call is in the tree');
    assert.deepEqual(at(call, 'args', '0'), { key: '0', type: 'str', value: '1+1' });
    assert.equal(m.diff!.counts.equal, 4);

    const s = await inspect(UNSAFE_SOURCE);
    assert.equal(s.role, 'source');
    assert.deepEqual(
      s.safety.unsafe.map((u) => u.global),
      ['posix.system'],
    );
  });

  it('a text file named .pt and a plain state_dict are "not a LoRA"', async () => {
    const t = await inspect('notes/not_a_checkpoint.pt');
    assert.equal(t.role, 'not-lora');
    assert.equal(t.status, 'UNRECOGNIZED');
    assert.equal(t.format, null);
    const sd = await inspect('models/state_dict.pt');
    assert.equal(sd.role, 'not-lora');
    assert.deepEqual(
      sd.tensors.map((r) => r.name),
      ['weight', 'bias'],
    );
    assert.equal(sd.fitness, null);
  });

  it("a file the index does not track is read now, compared with its LoRA's source, and said to be untracked", async () => {
    await mkdir(join(dir, '.hidden'), { recursive: true });
    await copyFile(ws.abs(STALE), join(dir, '.hidden', 'LoRA_A_4d5e6f.pt'));
    const m = await inspect('.hidden/LoRA_A_4d5e6f.pt');
    assert.equal(m.tracked, false);
    assert.equal(m.status, null);
    assert.match(m.message, /^not tracked/);
    assert.equal(m.role, 'copy');
    assert.equal(m.diff!.counts.differs, 4);
    await assert.rejects(
      inspectWorkspaceFile(ws, join(dir, 'no_such.pt')),
      (e: unknown) => e instanceof InspectError && /does not exist/.test((e as Error).message),
    );
  });

  it('the model is small plain JSON: no tensor bytes, whatever the file', async () => {
    for (const f of (await ws.report()).files) {
      const m: InspectModel = await inspect(f.path);
      const json = JSON.stringify(m);
      assert.deepEqual(Object.keys(JSON.parse(json)).sort(), Object.keys(m).sort(), f.path);
      assert.ok(json.length < 20000, `${f.path}: ${json.length} characters`);
    }
  });
});

describe('inspector view model on a pickle that would run code', function () {
  this.timeout(60000);
  let dir: string;

  before(async function () {
    if (!hasTorch()) this.skip();
    dir = await copyFixtureWorkspace('lora-inspect-unsafe-');
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('lists os.system and never runs it: the file it would create does not appear', async () => {
    const marker = join(dir, 'PWNED');
    const target = join(dir, 'Manchester_United', 'LoRA_A_abcdef.pt');
    const py = `
import os, sys, torch
class Hook:
    def __reduce__(self):
        return (os.system, (${JSON.stringify(`touch '${marker}'`)},))
obj = torch.load(sys.argv[2])
obj["metadata"]["hook"] = Hook()
torch.save(obj, sys.argv[1])
`;
    const p = spawnSync(PY, ['-c', py, target, join(dir, STALE.normalize('NFC'))], { encoding: 'utf8' });
    assert.equal(p.status, 0, p.stderr);
    assert.ok(!existsSync(marker));
    const ws = await Workspace.open(dir);
    ws.setReadOnly();
    await ws.scan();
    const m = await inspectWorkspaceFile(ws, target);
    assert.equal(m.status, 'UNSAFE');
    assert.deepEqual(
      m.safety.unsafe.map((u) => u.global),
      ['posix.system'],
    );
    assert.equal(at(m.metadata, 'metadata', 'hook').type, 'posix.system');
    assert.equal(at(m.metadata, 'metadata', 'hook', 'args', '0').value, `touch '${marker}'`);
    assert.ok(!existsSync(marker), 'nothing was executed');
  });
});

describe('inspector view model of safetensors LoRAs', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lora-inspect-st-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function write(rel: string, values: number[], md: Record<string, string>) {
    await mkdir(join(dir, rel, '..'), { recursive: true });
    const fh = await open(join(dir, rel), 'w');
    const data = new Uint8Array(new Float32Array(values).buffer);
    await writeSafetensors(fh, [{ name: 'layers.0.lora_A', dtype: 'F32', shape: [2, 2], data }], md);
    await fh.close();
  }

  it('the __metadata__ strings as the tree (copy keys marked), fitness_history from its JSON, values compared', async () => {
    await write('⭐_AKTIF_EN_IYILER/LoRA_S.safetensors', [1, 2, 3, 4], {
      id: 'lora_s',
      name: 'LoRA_S',
      fitness_history: '[0.5, 0.75, "x"]',
      sync_info: '{"last_sync_match": 50}',
    });
    await write('Liverpool/LoRA_S_aa11bb.safetensors', [1, 2.5, 3, -4], {
      id: 'lora_s',
      name: 'LoRA_S',
      team: 'Liverpool',
      fitness_history: '[0.5]',
      sync_info: '{"last_sync_match": 45}',
    });
    const ws = await Workspace.open(dir);
    ws.setReadOnly();
    await ws.scan();
    const m = await inspectWorkspaceFile(ws, join(dir, 'Liverpool/LoRA_S_aa11bb.safetensors'));
    assert.equal(m.format, 'safetensors');
    assert.equal(m.status, 'STALE');
    assert.deepEqual(m.tensors[0].diff, {
      name: 'layers.0.lora_A',
      kind: 'differs',
      compared: true,
      numel: 4,
      differing: 2,
      maxAbsDiff: 8,
    });
    assert.equal(at(m.metadata, 'team').mark, 'copy');
    assert.equal(at(m.metadata, 'sync_info').mark, 'ignored');
    const s = await inspectWorkspaceFile(ws, join(dir, '⭐_AKTIF_EN_IYILER/LoRA_S.safetensors'));
    assert.deepEqual(s.fitness, { path: 'fitness_history', values: [0.5, 0.75, null], total: 3 });
  });
});
