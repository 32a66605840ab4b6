/**
 * A plain state dict synced by the executor (a PEFT `adapter_model.bin` with torch's `_metadata`, and
 * kohya's `save_model_as=pt` fixture) loads in real torch with `torch.load(weights_only=True)` (the
 * default since torch 2.6; present in Debian's 1.13), holds exactly the source's tensors (torch.equal,
 * same dtype) and keys, no extra key, and its sync is recorded under .lora-sync/synced instead.
 *
 * The first case drives the executor with entries built here, the same way for the source and the
 * copy; the second goes through the whole engine (a .bin copy of a safetensors source).
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CONFIG } from '../../server/src/engine/config';
import { type FileEntry, makeEntry } from '../../server/src/engine/loraFile';
import { executeSync } from '../../server/src/engine/syncExecutor';
import { Workspace } from '../../server/src/engine/workspace';
import type { PlannedLora } from '../../server/src/engine/syncPlanner';
import { SyncRecords } from '../../server/src/engine/syncRecords';
import { unitConfigAt, unitOf } from '../../server/src/engine/unitFiles';
import { withCheckpoint } from '../../server/src/formats/checkpoint';
import { DIGEST_ALG, fingerprintCheckpoint } from '../../server/src/formats/fingerprint';
import { PY, requireTorch } from '../support/python';

const LAYOUTS = join(__dirname, '..', 'fixtures', 'layouts');

/** An entry of a plain state dict: every tensor, named by its key; no metadata. */
async function stateDictEntry(abs: string, rel: string): Promise<FileEntry> {
  const st = await stat(abs, { bigint: true });
  // As readEntry does: a folder unit's config digest is what the sync checks before writing it.
  const config = unitOf({ path: rel }).kind === 'folder' ? await unitConfigAt(abs) : undefined;
  return withCheckpoint(abs, async (c) => {
    const fp = await fingerprintCheckpoint(c);
    const tensors = fp.tensors.map((t) => ({ name: t.path, dtype: t.dtype, shape: t.shape, digest: t.digest }));
    const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : 1));
    return makeEntry({
      path: rel,
      size: Number(st.size),
      mtimeMs: Number(st.mtimeMs),
      mtimeNs: st.mtimeNs.toString(),
      ino: Number(st.ino),
      kind: 'lora',
      format: c.format,
      role: rel.startsWith('train/') ? 'source' : 'copy',
      unsafeGlobals: c.unsafe.map((u) => u.global),
      loraId: `name:${rel}`,
      tensors,
      tensorsDigest: createHash('sha256').update(JSON.stringify(sorted)).digest('hex').slice(0, 32),
      metaDigest: 'none',
      metaKeys: {},
      configDigest: config?.digest,
      copyKeys: [],
      syncInfo: {},
    });
  });
}

/** What torch.load(weights_only=True) makes of each pair: loads, same keys in order, same tensors and dtypes, same _metadata. */
const COMPARE = `
import sys, json, torch
out = {}
for src, copy in zip(sys.argv[1::2], sys.argv[2::2]):
    r = {}
    try:
        a = torch.load(src, weights_only=True)
        b = torch.load(copy, weights_only=True)
        r["type"] = type(b).__name__
        r["same_keys"] = list(a.keys()) == list(b.keys())
        r["equal"] = all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
        r["dtypes"] = sorted({str(b[k].dtype) for k in b})
        r["same_meta"] = getattr(a, "_metadata", None) == getattr(b, "_metadata", None)
        r["has_meta"] = getattr(b, "_metadata", None) is not None
    except Exception as e:
        r["error"] = repr(e)
    out[copy] = r
print(json.dumps(out))
`;

const MAKE = `
import sys, torch
from collections import OrderedDict
torch.manual_seed(0)
def sd(scale):
    d = OrderedDict()
    d["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] = torch.randn(4, 32) * scale
    d["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"] = (torch.randn(32, 4) * scale).half()
    d["base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"] = (torch.randn(4, 32) * scale).bfloat16()
    # What module.state_dict() attaches: the per-module versions, as a BUILD of the OrderedDict.
    d._metadata = OrderedDict([("", {"version": 1}), ("base_model", {"version": 1})])
    return d
torch.save(sd(1.0), sys.argv[1])
torch.save(sd(2.0), sys.argv[2])
`;

describe('sync of plain state dicts (real torch)', function () {
  this.timeout(120_000);
  let dir: string;
  before(() => requireTorch());
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lora-sd-sync-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the source state dict as it is (no key added), loadable with weights_only=True, and records the sync apart', async () => {
    const pairs: Array<[string, string]> = [
      ['train/pixel_lora/adapter_model.bin', 'deploy/staging/pixel_lora/adapter_model.bin'],
      ['train/kohya_pt/pixel_style.pt', 'models/pixel_style_1a2b3c.pt'],
    ];
    for (const p of ['train/pixel_lora', 'deploy/staging/pixel_lora', 'train/kohya_pt', 'models'])
      await mkdir(join(dir, p), { recursive: true });
    execFileSync(PY, ['-c', MAKE, join(dir, pairs[0][0]), join(dir, pairs[0][1])]);
    await copyFile(join(LAYOUTS, 'train/kohya_pt/pixel_style.pt'), join(dir, pairs[1][0]));
    await copyFile(join(LAYOUTS, 'train/kohya_pt/pixel_style-000004.pt'), join(dir, pairs[1][1]));
    // A sidecar in the folder unit, never touched.
    await copyFile(
      join(LAYOUTS, 'deploy/staging/pixel_lora/adapter_config.json'),
      join(dir, 'deploy/staging/pixel_lora/adapter_config.json'),
    );
    await copyFile(
      join(LAYOUTS, 'deploy/staging/pixel_lora/adapter_config.json'),
      join(dir, 'train/pixel_lora/adapter_config.json'),
    );

    const entries = new Map<string, FileEntry>();
    for (const [s, c] of pairs) {
      entries.set(s, await stateDictEntry(join(dir, s), s));
      entries.set(c, await stateDictEntry(join(dir, c), c));
      assert.notEqual(entries.get(s)!.tensorsDigest, entries.get(c)!.tensorsDigest, 'the copy starts stale');
    }
    const plan: PlannedLora[] = pairs.map(([s, c]) => ({
      id: `name:${s}`,
      name: s,
      source: s,
      copies: [{ path: c, status: 'STALE', action: 'write', why: 'the source moved on' }],
    }));
    const records = new SyncRecords(dir);
    const res = await executeSync(
      plan,
      {
        root: dir,
        cfg: DEFAULT_CONFIG,
        abs: (r) => join(dir, r),
        entry: (r) => entries.get(r),
        records,
        read: (abs, rel) => stateDictEntry(abs, rel),
      },
      { reason: 'MANUAL' },
    );
    for (const l of res.loras) for (const c of l.copies) assert.equal(c.outcome, 'synced', `${c.path}: ${c.reason}`);

    const out = JSON.parse(
      execFileSync(PY, ['-c', COMPARE, ...pairs.flatMap(([s, c]) => [join(dir, s), join(dir, c)])], {
        encoding: 'utf8',
      }),
    );
    for (const [, c] of pairs) {
      const r = out[join(dir, c)];
      assert.equal(r.error, undefined, `${c}: ${r.error}`);
      assert.ok(r.same_keys, `${c}: the source's keys, in order, and no other`);
      assert.ok(r.equal, `${c}: torch.equal and the same dtype for every tensor`);
      assert.ok(r.same_meta, `${c}: the same _metadata`);
    }
    assert.equal(out[join(dir, pairs[0][1])].type, 'OrderedDict');
    assert.ok(out[join(dir, pairs[0][1])].has_meta);
    assert.deepEqual(out[join(dir, pairs[0][1])].dtypes, ['torch.bfloat16', 'torch.float16', 'torch.float32']);

    // The record lives in the state folder, read back by a new store (another process).
    const again = new SyncRecords(dir);
    await again.load();
    for (const [s, c] of pairs) {
      const r = again.recordOf(c);
      assert.ok(r, c);
      assert.equal(r.tensors, entries.get(s)!.tensorsDigest);
      assert.equal(r.alg, DIGEST_ALG);
      assert.equal(r.source, s);
    }
    // The config beside the copy is the same as the source's here: not rewritten.
    assert.ok(
      (await readFile(join(dir, 'deploy/staging/pixel_lora/adapter_config.json'))).equals(
        await readFile(join(LAYOUTS, 'deploy/staging/pixel_lora/adapter_config.json')),
      ),
    );
  });

  it('writes a .bin copy of a safetensors source (f32, f16, bf16) as a state dict torch loads with weights_only=True', async () => {
    // The source is written from the safetensors specification by Python (not by our writer); the
    // copy is an older state dict saved by torch.save, as PEFT's save_pretrained(safe_serialization=False) does.
    const MAKE_PAIR = `
import sys, json, struct, torch
from collections import OrderedDict
torch.manual_seed(1)
names = ["base_model.model.layers.0.q_proj.lora_A.weight", "base_model.model.layers.0.q_proj.lora_B.weight",
         "base_model.model.layers.0.v_proj.lora_A.weight"]
dtypes = [torch.float32, torch.float16, torch.bfloat16]
codes = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
def tensors(scale):
    return OrderedDict((n, (torch.randn(4, 16) * scale).to(d)) for n, d in zip(names, dtypes))
src = tensors(1.0)
header, data = {}, b""
for n, t in src.items():
    raw = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes()
    header[n] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
header["__metadata__"] = {"format": "pt"}
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
torch.save(tensors(2.0), sys.argv[2])
`;
    const CHECK = `
import sys, json, struct, torch
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
c = torch.load(sys.argv[2], weights_only=True)
out = {"type": type(c).__name__, "keys": sorted(c.keys()) == sorted(k for k in h if k != "__metadata__"), "equal": True, "dtypes": sorted({str(v.dtype) for v in c.values()})}
for k, v in h.items():
    if k == "__metadata__": continue
    s, e = v["data_offsets"]
    t = c[k]
    if list(t.shape) != v["shape"] or t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() != b[8 + n + s:8 + n + e]:
        out["equal"] = False
print(json.dumps(out))
`;
    const SRC = 'train/ad/adapter_model.safetensors';
    const COPY = 'deploy/ad/adapter_model.bin';
    for (const p of ['train/ad', 'deploy/ad']) await mkdir(join(dir, p), { recursive: true });
    await writeFile(join(dir, 'lora-sync.json'), JSON.stringify({ sourceFolders: ['train'] }));
    execFileSync(PY, ['-c', MAKE_PAIR, join(dir, SRC), join(dir, COPY)]);
    const ws = await Workspace.open(dir);
    await ws.scan();
    assert.equal(ws.status(COPY)?.status, 'DIVERGED', JSON.stringify(ws.status(COPY)));
    const res = await ws.sync(ws.plan({ force: true }), { reason: 'MANUAL' });
    const done = res.loras.flatMap((l) => l.copies).find((c) => c.path === COPY);
    assert.equal(done?.outcome, 'synced', done?.reason);
    const out = JSON.parse(execFileSync(PY, ['-c', CHECK, join(dir, SRC), join(dir, COPY)], { encoding: 'utf8' }));
    assert.deepEqual(out, {
      type: 'OrderedDict',
      keys: true,
      equal: true,
      dtypes: ['torch.bfloat16', 'torch.float16', 'torch.float32'],
    });
    const again = await Workspace.open(dir);
    await again.scan();
    assert.equal(again.status(COPY)?.status, 'IN_SYNC');
  });
});
