/**
 * Torch files beyond the seed's own, written by real torch (test/python/make_edge_cases.py), through
 * the CLI as a user runs it, and read back by real `torch.load`: a quantized tensor, copy keys that
 * hold tensors, the legacy format in protocols 4 and 5, a name with no room for a temporary name, a
 * sparse tensor, numpy in metadata, a key only a copy has, a never-synced copy, a corrupt source, a
 * config with a byte-order mark, a state folder that is a file. Found by a black-box probe; each
 * case failed (a copy torch could not load, a silent overwrite, a crash) before its fix.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { walk, sha256File } from '../support/files';
import { PY, pyScript, requireTorch } from '../support/python';

const CLI = join(__dirname, '..', '..', 'dist', 'cli.js');
const SRC = '⭐_AKTIF_EN_IYILER/LoRA_X.pt';
const COPY = 'Team/🎯_WIN_EXPERTS/LoRA_X_abc123.pt';

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

interface FileJson {
  path: string;
  status: string;
  message: string;
  why?: string;
}
function statusOf(root: string): FileJson[] {
  const r = cli('status', '--all', '--json', '--root', root);
  assert.ok(r.code === 0 || r.code === 1, r.err);
  return JSON.parse(r.out).files;
}
const fileIn = (files: FileJson[], path: string) => files.find((f) => f.path === path)!;

/** What torch.load sees in a copy against its source: tensors equal, and the copy's metadata as JSON-ish text. */
function torchView(root: string, copy = COPY): { equal: boolean; meta: Record<string, string> } {
  const py = String.raw`
import json, sys, torch
s = torch.load(sys.argv[1]); c = torch.load(sys.argv[2])
dense = lambda t: t.to_dense() if t.is_sparse else t
equal = s["lora_params"].keys() == c["lora_params"].keys() and all(
    torch.equal(dense(s["lora_params"][k]), dense(c["lora_params"][k])) and s["lora_params"][k].dtype == c["lora_params"][k].dtype
    for k in s["lora_params"])
print(json.dumps({"equal": equal, "meta": {k: repr(v) for k, v in c["metadata"].items()}}))
`;
  return JSON.parse(execFileSync(PY, ['-c', py, join(root, SRC), join(root, copy)], { encoding: 'utf8' }));
}

describe('interop: torch files beyond the seed, end to end through the CLI', () => {
  let out: string;
  const ws = (name: string) => join(out, name);

  before(async () => {
    requireTorch();
    if (!existsSync(CLI)) throw new Error('dist/cli.js is missing: run `npm run build` (npm test does)');
    out = await mkdtemp(join(tmpdir(), 'lora-edges-'));
    execFileSync(PY, [pyScript('make_edge_cases.py'), out]);
  });
  after(() => rm(out, { recursive: true, force: true }));

  for (const name of ['quantized', 'quantized_legacy'])
    it(`a quantized tensor (${name}): both files left out as unrecognized, the call named; a sync writes nothing`, async () => {
      const files = statusOf(ws(name));
      for (const p of [SRC, COPY]) {
        const f = fileIn(files, p);
        assert.equal(f.status, 'UNRECOGNIZED', p);
        assert.match(
          f.why ?? '',
          /cannot compare or copy: torch\._utils\._rebuild_qtensor at lora_params\.layers\.0\.lora_A$/,
        );
      }
      const before = await sha256File(join(ws(name), COPY));
      cli('sync', '--all', '--root', ws(name));
      assert.equal(await sha256File(join(ws(name), COPY)), before);
      const j = JSON.parse(cli('inspect', '--json', join(ws(name), SRC)).out);
      assert.equal(j.other_storages?.length, 1, JSON.stringify(j));
      assert.equal(j.other_storages[0].path, 'lora_params.layers.0.lora_A');
      assert.equal(j.other_storages[0].held_by, 'torch._utils._rebuild_qtensor');
      assert.equal(j.tensors.length, 1, 'the plain tensor is still listed');
    });

  it("copy keys holding tensors keep the copy's own bytes, under keys that do not clash with the source's", () => {
    const r = cli('sync', '--all', '--root', ws('own_tensor'));
    assert.equal(r.code, 0, r.out + r.err);
    const v = torchView(ws('own_tensor'));
    assert.ok(v.equal);
    assert.equal(v.meta.score, 'tensor(0.8700)');
    assert.equal(v.meta.team, 'tensor([2, 3, 4])');
    assert.equal(fileIn(statusOf(ws('own_tensor')), COPY).status, 'IN_SYNC');
  });

  for (const proto of [4, 5])
    it(`the legacy format in pickle protocol ${proto} is read, synced and loads`, () => {
      const root = ws(`legacy_p${proto}`);
      assert.equal(fileIn(statusOf(root), COPY).status, 'STALE');
      assert.equal(cli('sync', '--all', '--root', root).code, 0);
      const v = torchView(root);
      assert.ok(v.equal);
      assert.equal(v.meta.team, "'Team'");
      assert.equal(fileIn(statusOf(root), COPY).status, 'IN_SYNC');
    });

  it('a 240-byte file name syncs (the temporary name is cut to fit) and leaves no temporary file', async () => {
    const root = ws('long_name');
    const r = cli('sync', '--all', '--root', root);
    assert.equal(r.code, 0, r.out + r.err);
    assert.doesNotMatch(r.out + r.err, /ENAMETOOLONG/);
    const name = readdirSync(join(root, 'Team/🎯_WIN_EXPERTS'));
    assert.equal(name.length, 1, `only the copy: ${name}`);
    assert.ok(torchView(root, `Team/🎯_WIN_EXPERTS/${name[0]}`).equal);
    assert.ok((await walk(root)).every((p) => !p.includes('lora-sync-tmp')));
  });

  it('a sparse tensor is safe (torch.serialization._get_layout is data only) and syncs', () => {
    const root = ws('sparse');
    assert.equal(fileIn(statusOf(root), COPY).status, 'STALE');
    assert.equal(cli('sync', '--all', '--root', root).code, 0);
    assert.ok(torchView(root).equal);
  });

  it("inspect names the globals torch 2.6's default torch.load refuses (numpy in metadata)", () => {
    const r = cli('inspect', '--json', join(ws('numpy'), COPY));
    const j = JSON.parse(r.out);
    assert.equal(j.safety.safe, true);
    assert.ok(j.safety.beyond_weights_only.includes('numpy.core.multiarray.scalar'), r.out);
    assert.match(cli('inspect', join(ws('numpy'), COPY)).out, /weights_only=True\) refuses numpy/);
    assert.equal(
      JSON.parse(cli('inspect', '--json', join(ws('numpy'), SRC)).out).safety.beyond_weights_only,
      undefined,
    );
  });

  it('a key only the copy has: the plan says it is dropped, the sync keeps the old copy and says where', async () => {
    const root = ws('copy_only_key');
    const old = await sha256File(join(root, COPY));
    const plan = cli('sync', '--all', '--dry-run', '--root', root);
    assert.match(plan.out, /drops metadata\.notes \(only this copy had it, not a copy key\): a backup is kept/);
    const r = cli('sync', '--all', '--root', root);
    assert.equal(r.code, 0);
    const m =
      /note +Team\/🎯_WIN_EXPERTS\/LoRA_X_abc123\.pt: dropped metadata\.notes \(only this copy had it, not a copy key\); the old copy is in (\S+)/.exec(
        r.out,
      );
    assert.ok(m, r.out);
    assert.equal(await sha256File(join(root, m[1])), old, 'the backup is the old copy, byte for byte');
    assert.equal(torchView(root).meta.notes, undefined);
  });

  it('a copy nothing says was ever synced is DIVERGED with words that say so', () => {
    const f = fileIn(statusOf(ws('never_synced')), COPY);
    assert.equal(f.status, 'DIVERGED');
    assert.match(f.message, /no sync record or match number says the copy was ever synced/);
    assert.doesNotMatch(f.message, /since its last sync/);
  });

  it("a corrupt source: its copy's orphan message names it", () => {
    const f = fileIn(statusOf(ws('corrupt_source')), COPY);
    assert.equal(f.status, 'ORPHAN');
    assert.match(f.message, /no readable source for LoRA_X \(lora_X\): ⭐_AKTIF_EN_IYILER\/LoRA_X\.pt cannot be read/);
  });

  it('a lora-sync.json with a byte-order mark is read', () => {
    assert.equal(readFileSync(join(ws('bom_config'), 'lora-sync.json'))[0], 0xef);
    assert.equal(fileIn(statusOf(ws('bom_config')), COPY).status, 'STALE');
  });

  it('a state folder that is a file: a clear error on every command, no stack', () => {
    for (const args of [['status'], ['history'], ['verify'], ['sync', '--all']]) {
      const r = cli(...args, '--root', ws('state_file'));
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.err, /\.lora-sync is not a folder: LoRA Sync cannot keep its state there/, args.join(' '));
      assert.doesNotMatch(r.err, /internal error| {4}at /, args.join(' '));
    }
  });

  it('--match is a whole number from 0 to 2^53 - 1, written exactly or refused', () => {
    for (const bad of ['99999999999999999999999', '-5', '1.5', '1e3']) {
      const r = cli('sync', '--all', '--dry-run', '--match', bad, '--root', ws('bom_config'));
      assert.equal(r.code, 2, bad);
      assert.match(r.err, /--match takes a whole number from 0 to 9007199254740991/);
    }
  });
});
