/**
 * The engine's sync results, read back by real `torch.load` (Debian python3-torch at /usr/bin/python3):
 * on a copy of the torch-written fixture workspace, synced copies hold exactly the source's tensors
 * (same dtype, same keys, same bytes), their own per-copy keys exactly as expected.json lists them,
 * the source's general metadata, and a new sync_info. Forced copies too, with a byte-identical backup.
 * Files a sync must not touch (blocked, unsafe, corrupt, orphan, ...) keep every byte. Unsafe files
 * are never given to torch.load: the Python side refuses any pickle global outside a short allowlist.
 */
import { walk, sha256File } from '../support/files';
import { PY, PY_DIR, requireTorch } from '../support/python';
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Workspace } from '../../server/src/engine/workspace';
import type { CopyResult, SyncResult } from '../../server/src/engine/syncExecutor';

const FIX = join(__dirname, '..', 'fixtures', 'workspace');
const COPY_KEYS = ['team', 'specialization_key', 'score', 'match_count', 'exported_at'];

type Typed = unknown[];
interface TensorDesc {
  path: string;
  dtype: string;
  shape: number[];
  sha256: string;
}
interface Expected {
  path: string;
  role: string | null;
  expect: string;
  source?: string | null;
  sync_blocked?: string;
  unsafe_globals?: string[];
  copy_keys?: Typed;
  source_tensors?: TensorDesc[];
}
interface Facts {
  error?: string;
  top_keys: string[];
  tensors: TensorDesc[];
  general: Typed;
  copy_keys: Typed;
  sync_info?: { last_sync_match: Typed; sync_reason: Typed; lora_sync_type: string };
}
interface PairFacts {
  copy: Facts;
  source: Facts;
  key_sets_equal: boolean;
  all_equal: boolean;
  dtype_mismatches: string[];
}

/**
 * Loads each (copy, source) pair with torch.load and reports what torch sees: tensors of
 * `lora_params` (sha256 of their bytes), torch.equal + dtype per key, the typed forms (the fixture
 * generator's walker) of the general metadata, the per-copy keys and sync_info.
 */
const CHECKER = String.raw`
import json, os, sys, zipfile, pickletools
sys.path.insert(0, os.environ["FIXTURE_LIB"])
import generate_fixtures as g
import torch

COPY_KEYS = ${JSON.stringify(COPY_KEYS)}
# What a LoRA checkpoint may import; anything else and the file is never loaded.
ALLOWED = {"torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter", "collections OrderedDict",
           "torch FloatStorage", "torch DoubleStorage", "torch HalfStorage", "torch BFloat16Storage", "torch LongStorage",
           "torch IntStorage", "torch ShortStorage", "torch CharStorage", "torch ByteStorage", "torch BoolStorage",
           # plain data the fixtures' metadata holds: np.float64, bytes, sets, datetimes
           "numpy.core.multiarray scalar", "numpy dtype", "_codecs encode", "__builtin__ set", "datetime datetime"}

def safe_load(path):
    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl")]
        if len(pkl) != 1:
            raise RuntimeError("refused: not a one-pickle torch zip")
        bad = [x for x in g.pickle_globals(z.read(pkl[0])) if x not in ALLOWED]
        if bad:
            raise RuntimeError("refused to torch.load: unsafe globals %r" % bad)
    return torch.load(path)

def typed(v):
    return g.describe_tensors(v)[0]

def facts(obj):
    meta = obj["metadata"]
    info = meta.get("sync_info")
    out = {
        "top_keys": list(obj.keys()),
        "tensors": [{k: t[k] for k in ("path", "dtype", "shape", "sha256")} for t in g.describe_tensors(obj["lora_params"])[1]],
        "general": typed({k: v for k, v in meta.items() if k not in COPY_KEYS and k != "sync_info"}),
        "copy_keys": typed({k: meta[k] for k in COPY_KEYS if k in meta}),
    }
    if isinstance(info, dict):
        out["sync_info"] = {"last_sync_match": typed(info.get("last_sync_match")), "sync_reason": typed(info.get("sync_reason")),
                            "lora_sync_type": type(info.get("lora_sync")).__name__}
    return out

result = {}
for copy_path, source_path in json.load(open(sys.argv[1])):
    try:
        c, s = safe_load(copy_path), safe_load(source_path)
        cp_, sp = c["lora_params"], s["lora_params"]
        shared = [k for k in sp if k in cp_]
        result[copy_path] = {
            "copy": facts(c), "source": facts(s),
            "key_sets_equal": set(cp_) == set(sp),
            "all_equal": all(torch.equal(cp_[k], sp[k]) for k in shared),
            "dtype_mismatches": [k for k in shared if cp_[k].dtype != sp[k].dtype],
        }
    except Exception as e:
        result[copy_path] = {"copy": {"error": "%s: %s" % (type(e).__name__, e)}}
json.dump(result, sys.stdout)
`;

const sha256 = sha256File;

describe('interop: engine sync results read by real torch.load', function () {
  this.timeout(120000);
  let tmp: string;
  let checker: string;
  let run = 0;
  const expected: Expected[] = (JSON.parse(readFileSync(join(FIX, 'expected.json'), 'utf8')) as { files: Expected[] })
    .files;
  const byPath = new Map(expected.map((e) => [e.path, e]));

  before(async () => {
    requireTorch();
    tmp = await mkdtemp(join(tmpdir(), 'lora-engine-interop-'));
    checker = join(tmp, 'check_sync.py');
    await writeFile(checker, CHECKER);
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  /** A fresh copy of the fixture workspace: root, NFC path -> on-disk path, and every file's sha256. */
  async function freshWorkspace() {
    const root = join(tmp, `ws-${run++}`);
    await cp(FIX, root, { recursive: true });
    const onDisk = new Map<string, string>();
    const before = new Map<string, string>();
    for (const rel of await walk(root)) {
      const nfc = rel.normalize('NFC');
      onDisk.set(nfc, join(root, rel));
      before.set(nfc, await sha256(join(root, rel)));
    }
    return { root, onDisk, before };
  }

  function torchFacts(pairs: Array<[string, string]>): Record<string, PairFacts> {
    for (const [c, s] of pairs)
      for (const p of [c, s]) {
        const e = [...byPath.values()].find((x) => p.normalize('NFC').endsWith(`/${x.path}`));
        assert.ok(e && !e.unsafe_globals && e.expect !== 'UNSAFE', `refusing to give ${p} to torch.load`);
      }
    const job = join(tmp, `pairs-${run}.json`);
    writeFileSync(job, JSON.stringify(pairs));
    const out = execFileSync(PY, [checker, job], {
      encoding: 'utf8',
      maxBuffer: 64 << 20,
      env: { ...process.env, PYTHONHASHSEED: '0', PYTHONDONTWRITEBYTECODE: '1', FIXTURE_LIB: PY_DIR },
    });
    return JSON.parse(out);
  }

  /** What torch sees in a synced copy: the source's tensors and general metadata, its own keys, our sync_info. */
  function assertSynced(f: PairFacts | undefined, e: Expected): void {
    assert.ok(f, `${e.path}: no result`);
    assert.equal(f.copy.error, undefined, `${e.path}: ${f.copy.error}`);
    assert.ok(f.key_sets_equal, `${e.path}: tensor keys differ from the source's`);
    assert.ok(f.all_equal, `${e.path}: torch.equal is false for some tensor`);
    assert.deepEqual(f.dtype_mismatches, [], `${e.path}: dtypes differ from the source's`);
    assert.deepEqual(f.copy.tensors, f.source.tensors, `${e.path}: tensor bytes differ from the source's`);
    if (e.source_tensors)
      assert.deepEqual(
        f.copy.tensors,
        e.source_tensors,
        `${e.path}: tensors differ from expected.json's source_tensors`,
      );
    assert.deepEqual(f.copy.top_keys, f.source.top_keys, `${e.path}: top-level keys`);
    assert.deepEqual(f.copy.copy_keys, e.copy_keys, `${e.path}: per-copy keys changed`);
    assert.deepEqual(f.copy.general, f.source.general, `${e.path}: general metadata differs from the source's`);
    assert.deepEqual(
      f.copy.sync_info,
      { last_sync_match: ['int', '51'], sync_reason: ['str', 'LEARNING_UPDATE'], lora_sync_type: 'dict' },
      `${e.path}: sync_info`,
    );
  }

  function outcomes(res: SyncResult): Map<string, CopyResult> {
    return new Map(res.loras.flatMap((l) => l.copies.map((c) => [c.path, c] as const)));
  }

  /** Files a sync must never write, whatever the options: byte-identical afterwards. */
  async function assertUntouched(
    onDisk: Map<string, string>,
    before: Map<string, string>,
    written: Set<string>,
  ): Promise<void> {
    const mustKeep = expected.filter(
      (e) =>
        e.sync_blocked ||
        ['UNSAFE', 'CORRUPT', 'ORPHAN', 'SOURCE', 'DUPLICATE_SOURCE', 'UNRECOGNIZED', 'IN_SYNC'].includes(e.expect),
    );
    assert.ok(
      mustKeep.some((e) => e.expect === 'UNSAFE') &&
        mustKeep.some((e) => e.expect === 'CORRUPT') &&
        mustKeep.some((e) => e.expect === 'ORPHAN') &&
        mustKeep.some((e) => e.sync_blocked),
    );
    for (const e of mustKeep) {
      assert.ok(
        !written.has(e.path),
        `${e.path} (${e.expect}${e.sync_blocked ? `, blocked: ${e.sync_blocked}` : ''}) was written`,
      );
      assert.equal(await sha256(onDisk.get(e.path)!), before.get(e.path), `${e.path} (${e.expect}) changed`);
    }
    // And generally: only what the sync reports as written differs.
    for (const [nfc, abs] of onDisk)
      if (!written.has(nfc))
        assert.equal(await sha256(abs), before.get(nfc), `${nfc} changed but was not reported written`);
  }

  it('STALE and METADATA_DRIFT copies load with the source tensors, their own keys and a new sync_info', async () => {
    const { root, onDisk, before } = await freshWorkspace();
    const ws = await Workspace.open(root);
    await ws.scan();
    const res = await ws.sync(ws.plan(), { reason: 'LEARNING_UPDATE', match: 51 });
    assert.equal(res.failed, 0);
    const out = outcomes(res);
    const targets = expected.filter((e) => (e.expect === 'STALE' || e.expect === 'METADATA_DRIFT') && !e.sync_blocked);
    assert.deepEqual(targets.map((e) => e.expect).sort(), ['METADATA_DRIFT', 'STALE', 'STALE', 'STALE']);
    for (const e of targets)
      assert.equal(out.get(e.path)?.outcome, 'synced', `${e.path}: ${JSON.stringify(out.get(e.path))}`);
    const written = new Set([...out.values()].filter((c) => c.outcome === 'synced').map((c) => c.path));
    assert.deepEqual([...written].sort(), targets.map((e) => e.path).sort());

    const facts = torchFacts(targets.map((e) => [onDisk.get(e.path)!, onDisk.get(e.source!)!]));
    for (const e of targets) assertSynced(facts[onDisk.get(e.path)!], e);
    await assertUntouched(onDisk, before, written);
    // The engine agrees with torch.
    await ws.scan();
    for (const e of targets) assert.equal(ws.status(e.path)?.status, 'IN_SYNC', e.path);
  });

  it('forced: DIVERGED and DTYPE_MISMATCH copies get the source tensors (dtype too) and a byte-identical backup', async () => {
    const { root, onDisk, before } = await freshWorkspace();
    const ws = await Workspace.open(root);
    await ws.scan();
    const plan = ws.plan({ force: true });
    const forced = plan.flatMap((l) => l.copies.filter((c) => c.action === 'force'));
    const forcedPaths = new Set(forced.map((c) => c.path));
    for (const e of expected.filter((x) => x.expect === 'DIVERGED' || x.expect === 'DTYPE_MISMATCH'))
      assert.ok(forcedPaths.has(e.path), `${e.path} is not forced by the plan`);
    const res = await ws.sync(plan, { reason: 'LEARNING_UPDATE', match: 51 });
    assert.equal(res.failed, 0);
    const out = outcomes(res);
    for (const p of forcedPaths) {
      const c = out.get(p);
      assert.equal(c?.outcome, 'synced', `${p}: ${JSON.stringify(c)}`);
      const backup = c.backup ?? '';
      assert.ok(backup.startsWith('.lora-sync/backups/'), `${p}: backup '${backup}'`);
      assert.equal(await sha256(join(root, backup)), before.get(p), `${p}: the backup is not the file as it was`);
      assert.notEqual(await sha256(onDisk.get(p)!), before.get(p), `${p} was not rewritten`);
    }
    const targets = [...forcedPaths].map((p) => byPath.get(p)!);
    const facts = torchFacts(targets.map((e) => [onDisk.get(e.path)!, onDisk.get(e.source!)!]));
    for (const e of targets) assertSynced(facts[onDisk.get(e.path)!], e);
    // The float64 copy (torch.equal says equal to the float32 source) is float32 now.
    const dtypeCopy = expected.find((e) => e.expect === 'DTYPE_MISMATCH')!;
    assert.ok(facts[onDisk.get(dtypeCopy.path)!].copy.tensors.every((t) => t.dtype === 'float32'));
    const written = new Set([...out.values()].filter((c) => c.outcome === 'synced').map((c) => c.path));
    await assertUntouched(onDisk, before, written);
  });
});
