/**
 * Syncing real LoRA layouts through the engine (Workspace.plan + Workspace.sync), on copies of the
 * layout fixtures (test/fixtures/layouts, written by real torch and from the safetensors spec): a
 * kohya safetensors copy (data section byte-identical to the source's, metadata = the source's
 * general keys + the copy's own, header padded to 8, embedded hashes right, checked with Python's
 * hashlib), a PEFT folder unit (weights and adapter_config.json both brought over, sidecars and a
 * Trainer checkpoint never touched), and the refusals.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Workspace } from '../../server/src/engine/workspace';
import { readSafetensorsFile } from '../../server/src/formats/safetensors';
import { withCheckpoint } from '../../server/src/formats/checkpoint';
import { readTensorBytes } from '../../server/src/formats/fingerprint';
import { DIGEST_ALG } from '../../server/src/formats/fingerprint';
import { LAYOUTS } from '../support/layoutFixtures';

const PY = '/usr/bin/python3';

/** The header JSON and data section of a safetensors file, as bytes and parsed. */
async function parts(abs: string) {
  const b = await readFile(abs);
  const n = Number(b.readBigUInt64LE(0));
  const headerText = b.subarray(8, 8 + n).toString('utf8');
  return { n, headerText, header: JSON.parse(headerText), data: b.subarray(8 + n) };
}

/** SHA-256 of a file's data section, computed by Python's hashlib (an independent implementation). */
function pyDataSha(abs: string): string {
  return execFileSync(
    PY,
    [
      '-c',
      'import sys,struct,hashlib;b=open(sys.argv[1],"rb").read();n=struct.unpack("<Q",b[:8])[0];print(hashlib.sha256(b[8+n:]).hexdigest())',
      abs,
    ],
    { encoding: 'utf8' },
  ).trim();
}

async function put(dir: string, fixture: string, rel: string): Promise<void> {
  await mkdir(dirname(join(dir, rel)), { recursive: true });
  await copyFile(join(LAYOUTS, fixture), join(dir, rel));
}

/** A safetensors file with the fixture's tensors and data, plus `extra` metadata keys (a user's notes in a UI). */
async function withExtraKeys(fixture: string, out: string, extra: Record<string, string>): Promise<void> {
  const { n, header, data } = await parts(join(LAYOUTS, fixture));
  void n;
  header.__metadata__ = { ...header.__metadata__, ...extra };
  let text = JSON.stringify(header);
  while (Buffer.byteLength(text) % 8) text += ' ';
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, Buffer.concat([len, Buffer.from(text), data]));
}

async function snapshot(abs: string): Promise<{ bytes: Buffer; mtimeNs: bigint }> {
  return { bytes: await readFile(abs), mtimeNs: (await stat(abs, { bigint: true })).mtimeNs };
}

async function fresh(ws: Workspace): Promise<Workspace> {
  const again = await Workspace.open(ws.root);
  await again.scan();
  return again;
}

describe('sync of real LoRA layouts', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lora-layout-sync-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('a kohya safetensors copy', () => {
    const SRC = 'train/kohya/pixel_style.safetensors';
    const COPY = 'ComfyUI/models/loras/pixel_style_1a2b3c.safetensors';
    const NOTE = 'my favourite ✨ "pixel" style';
    beforeEach(async () => {
      await writeFile(
        join(dir, 'lora-sync.json'),
        JSON.stringify({ sourceFolders: ['train'], copyKeys: ['modelspec.description', 'team'] }),
      );
      await put(dir, SRC, SRC);
      // The copy: an older epoch under the copy's name, annotated by its user in a UI.
      await withExtraKeys('train/kohya/pixel_style-000008.safetensors', join(dir, COPY), {
        'modelspec.description': NOTE,
      });
      // Sidecars that belong to the copy.
      await writeFile(join(dir, 'ComfyUI/models/loras/pixel_style_1a2b3c.json'), '{"activation text": "pixel art"}');
      await writeFile(
        join(dir, 'ComfyUI/models/loras/pixel_style_1a2b3c.preview.png'),
        Buffer.from([0x89, 0x50, 1, 2]),
      );
      await writeFile(join(dir, 'ComfyUI/models/loras/pixel_style_1a2b3c.civitai.info'), '{"id": 1}');
    });

    it('is written with the source data section byte for byte, its metadata, the copy keys, and right hashes', async () => {
      const sidecars = ['json', 'preview.png', 'civitai.info'].map(
        (x) => `ComfyUI/models/loras/pixel_style_1a2b3c.${x}`,
      );
      const before = await Promise.all(sidecars.map((s) => snapshot(join(dir, s))));
      const ws = await Workspace.open(dir);
      await ws.scan();
      assert.notEqual(ws.status(COPY)?.status, 'IN_SYNC');
      const plan = ws.plan({ force: true });
      const planned = plan.flatMap((l) => l.copies).find((c) => c.path === COPY);
      assert.ok(planned && (planned.action === 'write' || planned.action === 'force'), JSON.stringify(plan));
      const res = await ws.sync(plan, { reason: 'MANUAL' });
      const done = res.loras.flatMap((l) => l.copies).find((c) => c.path === COPY)!;
      assert.equal(done.outcome, 'synced', done.reason);

      const src = await parts(join(dir, SRC));
      const out = await parts(join(dir, COPY));
      assert.ok(out.data.equals(src.data), 'data section byte-identical to the source');
      // Header: padded to 8 with spaces, as the safetensors library writes it; tensors in data order.
      assert.equal(out.n % 8, 0);
      assert.match(out.headerText, /^\{.*\} *$/s);
      assert.equal(
        Buffer.byteLength(out.headerText.trimEnd()) + (out.headerText.length - out.headerText.trimEnd().length),
        out.n,
      );
      const names = (h: Record<string, { data_offsets: number[] }>) =>
        Object.entries(h)
          .filter(([k]) => k !== '__metadata__')
          .sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0])
          .map(([k, v]) => [k, v.data_offsets]);
      assert.deepEqual(names(out.header), names(src.header));
      // Metadata: the source's general keys exactly, the copy's own key exactly, our record.
      const { sync_info: syncInfo, ...rest } = out.header.__metadata__;
      assert.deepEqual(rest, { ...src.header.__metadata__, 'modelspec.description': NOTE });
      const info = JSON.parse(syncInfo);
      assert.equal(info.lora_sync.source, SRC);
      assert.equal(info.sync_reason, 'MANUAL');
      // Embedded hashes right for the bytes written (Python's hashlib over the file as written).
      const dataSha = pyDataSha(join(dir, COPY));
      assert.equal(rest.sshs_model_hash, dataSha);
      assert.equal(rest['modelspec.hash_sha256'], `0x${dataSha}`);
      // The strict reader accepts it.
      const st = await readSafetensorsFile(join(dir, COPY));
      assert.equal(st.tensors.length, Object.keys(src.header).length - 1);
      // Sidecars untouched, bytes and mtime.
      const after = await Promise.all(sidecars.map((s) => snapshot(join(dir, s))));
      after.forEach((a, i) => {
        assert.ok(a.bytes.equals(before[i].bytes), sidecars[i]);
        assert.equal(a.mtimeNs, before[i].mtimeNs, sidecars[i]);
      });
      assert.equal((await fresh(ws)).status(COPY)?.status, 'IN_SYNC');
    });

    it('turns STALE when the source moves on, and a plain sync brings it to the new version', async () => {
      const ws = await Workspace.open(dir);
      await ws.scan();
      await ws.sync(ws.plan({ force: true }), { reason: 'MANUAL' });
      // The trainer writes a new final save over the source.
      await put(dir, 'train/kohya/pixel_style-step00000500.safetensors', SRC);
      const ws2 = await fresh(ws);
      assert.equal(ws2.status(COPY)?.status, 'STALE');
      const plan = ws2.plan();
      assert.equal(plan.flatMap((l) => l.copies).find((c) => c.path === COPY)?.action, 'write');
      const res = await ws2.sync(plan, { reason: 'LEARNING_UPDATE' });
      assert.equal(res.synced, 1);
      const out = await parts(join(dir, COPY));
      assert.ok(out.data.equals((await parts(join(dir, SRC))).data));
      assert.equal(out.header.__metadata__['modelspec.description'], NOTE);
      assert.equal(out.header.__metadata__.ss_steps, (await parts(join(dir, SRC))).header.__metadata__.ss_steps);
    });

    it('embeds the right kohya legacy hash for a copy past 1 MiB (the window in the data)', async () => {
      await put(dir, 'train/kohya/big_style.safetensors', 'train/kohya/big_style.safetensors');
      // A copy of the same LoRA (its ss_output_name) whose last weight byte changed on its own: forced.
      const bytes = await readFile(join(LAYOUTS, 'train/kohya/big_style.safetensors'));
      bytes[bytes.length - 1] ^= 0x40;
      await mkdir(join(dir, 'models'), { recursive: true });
      await writeFile(join(dir, 'models/big_style_a1b2c3.safetensors'), bytes);
      const ws = await Workspace.open(dir);
      await ws.scan();
      const res = await ws.sync(ws.plan({ force: true }), { reason: 'MANUAL' });
      const done = res.loras.flatMap((l) => l.copies).find((c) => c.path === 'models/big_style_a1b2c3.safetensors');
      assert.equal(done?.outcome, 'synced', done?.reason);
      const src = await parts(join(dir, 'train/kohya/big_style.safetensors'));
      const out = await parts(join(dir, 'models/big_style_a1b2c3.safetensors'));
      assert.ok(out.data.equals(src.data));
      // make_layouts.py computed the source's sshs_legacy_hash as kohya does (an independent implementation).
      assert.equal(out.header.__metadata__.sshs_legacy_hash, src.header.__metadata__.sshs_legacy_hash);
      assert.equal(
        out.header.__metadata__.sshs_model_hash,
        pyDataSha(join(dir, 'models/big_style_a1b2c3.safetensors')),
      );
    });

    it('corrects wrong embedded hashes and says so in the history event', async () => {
      // The source (same tensors and ss_* metadata as the good final save) embeds wrong hashes; the copy
      // (an older epoch of the same run) is brought to it.
      await put(dir, 'ComfyUI/models/loras/pixel_style_badhash.safetensors', SRC);
      await put(dir, 'train/kohya/pixel_style-000008.safetensors', 'models/pixel_style_b1c2d3.safetensors');
      const ws = await Workspace.open(dir);
      await ws.scan();
      const res = await ws.sync(ws.plan({ force: true }), { reason: 'MANUAL' });
      const done = res.loras.flatMap((l) => l.copies).find((c) => c.path === 'models/pixel_style_b1c2d3.safetensors')!;
      assert.equal(done.outcome, 'synced', done.reason);
      const out = await parts(join(dir, 'models/pixel_style_b1c2d3.safetensors'));
      const dataSha = pyDataSha(join(dir, 'models/pixel_style_b1c2d3.safetensors'));
      assert.equal(out.header.__metadata__.sshs_model_hash, dataSha);
      assert.equal(out.header.__metadata__['modelspec.hash_sha256'], `0x${dataSha}`);
      // The right legacy hash is the good file's: same tensors, same ss_* metadata.
      const good = await parts(join(LAYOUTS, 'train/kohya/pixel_style.safetensors'));
      assert.equal(out.header.__metadata__.sshs_legacy_hash, good.header.__metadata__.sshs_legacy_hash);
      assert.ok(
        done.notes?.some((n) => n.startsWith('sshs_model_hash corrected')),
        JSON.stringify(done.notes),
      );
      const events = await ws.history.read();
      const sync = events.events.find((e) => e.event === 'SYNC' && e.details && 'notes' in e.details);
      assert.ok(sync, 'the SYNC event carries the notes');
      assert.deepEqual(
        (sync!.details as { notes: Record<string, string[]> }).notes['models/pixel_style_b1c2d3.safetensors'],
        done.notes,
      );
      // The corrected hashes describe the same data: the copy is in sync, not drifting for ever.
      assert.equal((await fresh(ws)).status('models/pixel_style_b1c2d3.safetensors')?.status, 'IN_SYNC');
    });
  });

  describe('the sync records kept under .lora-sync/synced', () => {
    it('tell STALE from DIVERGED for a copy that carries no record of its own', async () => {
      const SRC = 'train/kohya/pixel_style.safetensors';
      const COPY = 'models/pixel_style_1a2b3c.safetensors';
      await writeFile(join(dir, 'lora-sync.json'), JSON.stringify({ sourceFolders: ['train'] }));
      await put(dir, SRC, SRC);
      await put(dir, 'train/kohya/pixel_style-000008.safetensors', COPY);
      const ws = await Workspace.open(dir);
      await ws.scan();
      const mine = ws.entry(COPY)!.tensorsDigest;
      assert.equal(ws.status(COPY)?.status, 'DIVERGED', 'no record, no match numbers: the safe side');
      // A record saying LoRA Sync wrote exactly these tensors: the source moved on since.
      await ws.records.record(COPY, { tensors: mine, alg: DIGEST_ALG, source: SRC });
      assert.equal((await fresh(ws)).status(COPY)?.status, 'STALE');
      // A record of other tensors: the copy changed on its own since that sync.
      await ws.records.record(COPY, { tensors: 'f'.repeat(32), alg: DIGEST_ALG, source: SRC });
      const st = (await fresh(ws)).status(COPY);
      assert.equal(st?.status, 'DIVERGED');
      assert.equal(st?.issues[0].type, 'CHANGED_SINCE_SYNC');
    });
  });

  describe('a PEFT folder unit', () => {
    const SRC = 'train/pixel_lora';
    const PROD = 'deploy/prod/pixel_lora';
    const OLD_CONFIG = '{"peft_type": "LORA", "r": 4, "peft_version": "0.12.0"}\n';
    beforeEach(async () => {
      await writeFile(
        join(dir, 'lora-sync.json'),
        JSON.stringify({ sourceFolders: ['train'], include: ['**/*.safetensors', '**/*.bin', '**/*.pt'] }),
      );
      for (const f of ['adapter_model.safetensors', 'adapter_config.json', 'README.md'])
        await put(dir, `peft/pixel_lora/${f}`, `${SRC}/${f}`);
      // The deployed copy: the staging adapter of checkpoint-500, an older config, its own files.
      await put(dir, 'peft/pixel_lora/checkpoint-500/adapter_model.safetensors', `${PROD}/adapter_model.safetensors`);
      await writeFile(join(dir, PROD, 'adapter_config.json'), OLD_CONFIG);
      await writeFile(join(dir, PROD, 'README.md'), '# prod deployment notes\n');
      await writeFile(join(dir, PROD, 'deploy.yaml'), 'replicas: 2\n');
      // A Trainer output_dir inside the workspace, outside the source folders.
      for (const f of [
        'adapter_model.safetensors',
        'adapter_config.json',
        'optimizer.pt',
        'scheduler.pt',
        'rng_state.pth',
      ])
        await put(dir, `hf_out/checkpoint-500/${f}`, `hf_out/checkpoint-500/${f}`);
    });

    it('brings the weights and adapter_config.json over, keeps both in the backup, touches nothing else', async () => {
      const own = ['README.md', 'deploy.yaml'].map((f) => `${PROD}/${f}`);
      const ckpt = (await readdir(join(dir, 'hf_out/checkpoint-500'))).map((f) => `hf_out/checkpoint-500/${f}`);
      const before = await Promise.all([...own, ...ckpt].map((s) => snapshot(join(dir, s))));
      const ws = await Workspace.open(dir);
      await ws.scan();
      const plan = ws.plan({ force: true });
      const copies = plan.flatMap((l) => l.copies);
      const prod = copies.find((c) => c.path === `${PROD}/adapter_model.safetensors`);
      assert.ok(prod && prod.action === 'force', JSON.stringify(plan));
      // A Trainer checkpoint is never a target (refused, or not a copy of this LoRA at all).
      for (const c of copies.filter((c) => c.path.startsWith('hf_out/'))) assert.equal(c.action, 'refuse', c.why);
      const res = await ws.sync(plan, { reason: 'MANUAL' });
      const done = res.loras.flatMap((l) => l.copies).find((c) => c.path === prod.path)!;
      assert.equal(done.outcome, 'synced', done.reason);

      const src = await parts(join(dir, SRC, 'adapter_model.safetensors'));
      const out = await parts(join(dir, PROD, 'adapter_model.safetensors'));
      assert.ok(out.data.equals(src.data));
      assert.equal(out.header.__metadata__.format, 'pt', 'PEFT/transformers read metadata.format');
      assert.ok(
        (await readFile(join(dir, PROD, 'adapter_config.json'))).equals(
          await readFile(join(dir, SRC, 'adapter_config.json')),
        ),
      );
      // The backup keeps both files of the unit as they were.
      assert.ok(done.backup);
      const backupDir = dirname(join(dir, done.backup!));
      assert.equal(await readFile(join(backupDir, 'adapter_config.json'), 'utf8'), OLD_CONFIG);
      assert.ok(
        (await readFile(join(dir, done.backup!))).equals(
          await readFile(join(LAYOUTS, 'peft/pixel_lora/checkpoint-500/adapter_model.safetensors')),
        ),
      );
      // Nothing else in the folder, nothing of the Trainer's checkpoint, changed or copied.
      const after = await Promise.all([...own, ...ckpt].map((s) => snapshot(join(dir, s))));
      after.forEach((a, i) => {
        assert.ok(a.bytes.equals(before[i].bytes), [...own, ...ckpt][i]);
        assert.equal(a.mtimeNs, before[i].mtimeNs, [...own, ...ckpt][i]);
      });
      assert.deepEqual((await readdir(join(dir, PROD))).sort(), [
        'README.md',
        'adapter_config.json',
        'adapter_model.safetensors',
        'deploy.yaml',
      ]);
      assert.equal((await fresh(ws)).status(`${PROD}/adapter_model.safetensors`)?.status, 'IN_SYNC');
    });

    it('a config that differs alone is METADATA_DRIFT, and a plain sync brings it back', async () => {
      await put(dir, 'peft/pixel_lora/adapter_model.safetensors', `${PROD}/adapter_model.safetensors`);
      const ws = await Workspace.open(dir);
      await ws.scan();
      const st = ws.status(`${PROD}/adapter_model.safetensors`);
      assert.equal(st?.status, 'METADATA_DRIFT');
      assert.ok(
        st?.issues.some((i) => i.param?.startsWith('adapter_config.') && i.type === 'METADATA_MISMATCH'),
        JSON.stringify(st),
      );
      const res = await ws.sync(ws.plan(), { reason: 'MANUAL' });
      assert.equal(res.synced, 1, JSON.stringify(res));
      assert.ok(
        (await readFile(join(dir, PROD, 'adapter_config.json'))).equals(
          await readFile(join(dir, SRC, 'adapter_config.json')),
        ),
      );
      assert.equal((await fresh(ws)).status(`${PROD}/adapter_model.safetensors`)?.status, 'IN_SYNC');
    });

    it('a deployed adapter_config.json that is not JSON: the plan says it is replaced, the sync keeps it in a backup', async () => {
      await put(dir, 'peft/pixel_lora/checkpoint-500/adapter_model.safetensors', `${PROD}/adapter_model.safetensors`);
      const broken = '{"r": 8, "lora_alpha": ';
      await writeFile(join(dir, PROD, 'adapter_config.json'), broken);
      const ws = await Workspace.open(dir);
      await ws.scan();
      // (The copy is diverged here, as in the test above: forced.)
      const plan = ws.plan({ force: true });
      const planned = plan.flatMap((l) => l.copies).find((c) => c.path === `${PROD}/adapter_model.safetensors`)!;
      assert.equal(planned.action, 'force', planned.why);
      assert.match(planned.why, /kept as a backup; replaces its adapter_config\.json, which is not valid JSON$/);
      const res = await ws.sync(plan, { reason: 'MANUAL' });
      const done = res.loras.flatMap((l) => l.copies).find((c) => c.path === planned.path)!;
      assert.equal(done.outcome, 'synced', done.reason);
      assert.match(
        done.notes?.join('\n') ?? '',
        /replaced its adapter_config\.json, which was not valid JSON; the old copy is in /,
      );
      assert.equal(await readFile(join(dirname(join(dir, done.backup!)), 'adapter_config.json'), 'utf8'), broken);
      assert.ok(
        (await readFile(join(dir, PROD, 'adapter_config.json'))).equals(
          await readFile(join(dir, SRC, 'adapter_config.json')),
        ),
      );
    });

    it('a .bin copy of a .safetensors source is written as a torch state dict: its format kept, the source tensors, its record apart', async () => {
      const BIN = 'deploy/staging/pixel_lora/adapter_model.bin';
      await put(dir, BIN, BIN);
      await writeFile(join(dir, 'deploy/staging/pixel_lora/adapter_config.json'), OLD_CONFIG);
      const ws = await Workspace.open(dir);
      await ws.scan();
      assert.notEqual(ws.status(BIN)?.status, 'IN_SYNC');
      const plan = ws.plan({ force: true });
      const staged = plan.flatMap((l) => l.copies).find((c) => c.path === BIN);
      assert.ok(staged && (staged.action === 'write' || staged.action === 'force'), JSON.stringify(staged));
      const res = await ws.sync(plan, { reason: 'MANUAL' });
      const done = res.loras.flatMap((l) => l.copies).find((c) => c.path === BIN);
      assert.equal(done?.outcome, 'synced', done?.reason);
      // Read back by our reader: a torch zip holding exactly the source's tensors, byte for byte.
      const [src, copy] = await Promise.all([
        readSafetensorsFile(join(dir, SRC, 'adapter_model.safetensors')),
        withCheckpoint(join(dir, BIN), async (c) => {
          const m = new Map<string, Buffer>();
          for (const t of c.tensors) m.set(t.path, Buffer.from(await readTensorBytes(c, t)));
          return { format: c.format, m, unsafe: c.unsafe.length };
        }),
      ]);
      assert.equal(copy.format, 'torch-zip');
      assert.equal(copy.unsafe, 0);
      assert.deepEqual([...copy.m.keys()].sort(), src.tensors.map((t) => t.name).sort());
      const srcBytes = await readFile(join(dir, SRC, 'adapter_model.safetensors'));
      for (const t of src.tensors) assert.ok(copy.m.get(t.name)?.equals(srcBytes.subarray(t.begin, t.end)), t.name);
      assert.ok(
        (await readFile(join(dir, 'deploy/staging/pixel_lora/adapter_config.json'))).equals(
          await readFile(join(dir, SRC, 'adapter_config.json')),
        ),
      );
      const again = await fresh(ws);
      assert.equal(again.status(BIN)?.status, 'IN_SYNC');
      assert.equal(again.records.recordOf(BIN)?.source, `${SRC}/adapter_model.safetensors`);
    });

    it('a .pt copy of a kohya safetensors source is refused (ss_* metadata a state dict cannot hold) and left alone', async () => {
      await writeFile(join(dir, 'lora-sync.json'), JSON.stringify({ sourceFolders: ['train'] }));
      await put(dir, 'train/kohya/pixel_style.safetensors', 'train/kohya/pixel_style.safetensors');
      await put(dir, 'train/kohya/pixel_style-000008.safetensors', 'train/kohya/pixel_style-000008.safetensors');
      // The copy: epoch 8's tensors saved by real torch as a plain state dict (found by its content).
      await mkdir(join(dir, 'models'), { recursive: true });
      execFileSync(PY, [
        '-c',
        `import sys, json, struct, torch, numpy as np
from collections import OrderedDict
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
dt = {'F32': np.float32, 'F16': np.float16}
sd = OrderedDict()
for k, v in h.items():
    if k == '__metadata__': continue
    s, e = v['data_offsets']
    sd[k] = torch.from_numpy(np.frombuffer(b[8 + n + s:8 + n + e], dtype=dt[v['dtype']]).copy().reshape(v['shape']))
torch.save(sd, sys.argv[2])`,
        join(LAYOUTS, 'train/kohya/pixel_style-000008.safetensors'),
        join(dir, 'models/pixel_style.pt'),
      ]);
      const before = await readFile(join(dir, 'models/pixel_style.pt'));
      const ws = await Workspace.open(dir);
      await ws.scan();
      const plan = ws.plan({ force: true });
      const c = plan.flatMap((l) => l.copies).find((x) => x.path === 'models/pixel_style.pt');
      assert.ok(c, JSON.stringify(plan));
      assert.equal(c.action, 'refuse');
      assert.match(c.why, /metadata a torch state dict cannot hold \(ss_/);
      await ws.sync(plan, { reason: 'MANUAL' });
      assert.ok((await readFile(join(dir, 'models/pixel_style.pt'))).equals(before));
    });
  });
});
