/**
 * The copy engine on a workspace written by real torch (test/fixtures/workspace, one file per
 * status, expected statuses in expected.json): statuses, the status report, sync (what is written,
 * what is not, per-copy keys kept exactly), the engine's own sync record, forced overwrites with
 * backups, and a copy changed between plan and write.
 */
import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Workspace } from '../../server/src/engine/workspace';
import { trainerStep } from '../../server/src/demo/trainerStep';
import { withCheckpoint } from '../../server/src/formats/checkpoint';
import { readTensorBytes } from '../../server/src/formats/fingerprint';
import { getKey, mappingEntries } from '../../server/src/formats/pickle/nodes';
import { typedForm, type Typed } from '../../server/src/formats/pyValue';
import { compareWithSource, statusOf } from '../../server/src/engine/statusRules';
import type { FileEntry } from '../../server/src/engine/loraFile';
import { DIGEST_ALG } from '../../server/src/formats/fingerprint';

const FIX = join(__dirname, '..', 'fixtures', 'workspace');
interface Expected {
  path: string;
  lora_id: string | null;
  lora_name?: string;
  role: string | null;
  expect: string;
  copy_keys?: Record<string, Typed>;
  source?: string;
  sync_blocked?: string;
  source_tensors?: Array<{ path: string; sha256: string }>;
}
const expected: { files: Expected[] } = JSON.parse(require('node:fs').readFileSync(join(FIX, 'expected.json'), 'utf8'));

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function fresh(): Promise<{ dir: string; ws: Workspace }> {
  const dir = await mkdtemp(join(tmpdir(), 'lora-engine-'));
  await cp(FIX, dir, { recursive: true });
  const ws = await Workspace.open(dir);
  await ws.scan();
  return { dir, ws };
}

/** Bytes of each file, by its NFC path (the disk path may be NFD: ws.abs knows). */
async function bytesOf(ws: Workspace, files: string[]): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for (const f of files) m.set(f, sha(await readFile(ws.abs(f))));
  return m;
}

/** The typed form of a copy's per-copy keys, as the fixture generator wrote them. */
async function copyKeysOf(path: string): Promise<Record<string, Typed>> {
  return withCheckpoint(path, async (c) => {
    const meta = getKey(c.root!, 'metadata')!;
    const out: Record<string, Typed> = {};
    for (const [k, v] of mappingEntries(meta)!)
      if (k.kind === 'str' && ['team', 'specialization_key', 'score', 'match_count', 'exported_at'].includes(k.value))
        out[k.value] = typedForm(v);
    return out;
  });
}

describe('engine on a torch-written workspace', function () {
  this.timeout(60000);
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('gives every file the status expected.json names', async () => {
    const { dir, ws } = await fresh();
    dirs.push(dir);
    const r = await ws.report();
    const got = new Map(r.files.map((f) => [f.path, f]));
    assert.equal(r.files.length, expected.files.length);
    for (const e of expected.files) {
      const f = got.get(e.path);
      assert.ok(f, `missing ${e.path}`);
      assert.equal(f.status, e.expect, `${e.path}: ${f.message}`);
      if (e.role) assert.equal(f.role, e.role, e.path);
      if (e.expect !== 'UNRECOGNIZED' && e.expect !== 'CORRUPT' && e.lora_id)
        assert.equal(f.lora_id, e.lora_id, e.path);
      if (f.status !== 'SOURCE' && f.status !== 'IN_SYNC' && f.status !== 'UNRECOGNIZED')
        assert.ok(f.issues.length > 0, `${e.path} has issues`);
    }
    // identity by file name when the metadata has no id
    assert.equal(got.get('💎_PERFECT_HYBRID_HALL/LoRA_I_0a1b2c.pt')!.lora_id, 'name:LoRA_I');
    // the report's shape: stats, loras with copies, files
    assert.equal(r.stats.total_loras_tracked, r.loras.length);
    assert.equal(r.stats.by_status.STALE, expected.files.filter((e) => e.expect === 'STALE').length);
    const a = r.loras.find((l) => l.id === 'lora_a')!;
    assert.equal(a.source, '⭐_AKTIF_EN_IYILER/LoRA_A.pt');
    assert.equal(a.copies.length, 4);
    // a corrupt copy is still shown under its LoRA, found by its file name
    assert.ok(r.loras.find((l) => l.id === 'lora_f')!.copies.some((c) => c.status === 'CORRUPT'));
    // messages name what is wrong and where the source is
    assert.match(
      got.get('Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt')!.message,
      /^stale: 4 of 4 tensors differ from ⭐_AKTIF_EN_IYILER\/LoRA_A\.pt, last synced at match 45, source at match 50$/,
    );
    // the seed's verify_sync_integrity shape
    const v = ws.verify(['lora_a']);
    assert.equal(v.is_consistent, false);
    assert.ok(v.issues.some((i) => i.type === 'PARAM_MISMATCH' && i.param === 'layers.0.lora_A'));
    assert.equal(ws.verify(['lora_h']).is_consistent, true);
  });

  it("sync writes STALE and drifted copies with the source tensors and keeps each copy's own keys exactly; nothing else is touched", async () => {
    const { dir, ws } = await fresh();
    dirs.push(dir);
    const all = expected.files.map((e) => e.path);
    const before = await bytesOf(ws, all);
    const mtimes = new Map<string, number>();
    for (const f of all) mtimes.set(f, (await stat(ws.abs(f))).mtimeMs);
    const keysBefore = new Map<string, Record<string, Typed>>();
    for (const e of expected.files.filter(
      (x) => x.copy_keys && (x.expect === 'STALE' || x.expect === 'METADATA_DRIFT'),
    ))
      keysBefore.set(e.path, await copyKeysOf(ws.abs(e.path)));
    const res = await ws.sync(ws.plan(), { reason: 'LEARNING_UPDATE', match: 51 });
    const writable = expected.files.filter(
      (e) => (e.expect === 'STALE' || e.expect === 'METADATA_DRIFT') && !e.sync_blocked,
    );
    assert.equal(res.synced, writable.length);
    assert.equal(res.failed, 0);
    // The drifted copy's hand_note, a key no source has, is dropped by the write: kept in a backup, said in a note.
    const drift = res.loras.flatMap((l) => l.copies).find((c) => c.path.endsWith('/LoRA_A_7a8b9c.pt'))!;
    // A STALE copy with fewer tensors than its source (lora_b's, 3 of 4 names): a network of another
    // shape is replaced, so the old copy is kept and the note says so.
    const fewer = res.loras.flatMap((l) => l.copies).find((c) => c.path.endsWith('/LoRA_B_b0b1b2.pt'))!;
    assert.equal(fewer.outcome, 'synced');
    assert.equal(sha(await readFile(ws.abs(fewer.backup!))), before.get(fewer.path), 'byte for byte');
    assert.match(
      fewer.notes?.join('\n') ?? '',
      /^the source's tensor names are not this copy's \(1 only in the source, 0 only in this copy\); the old copy is in /,
    );
    assert.ok(drift.backup, 'the old copy is kept');
    assert.equal(sha(await readFile(ws.abs(drift.backup))), before.get(drift.path), 'byte for byte');
    assert.match(
      drift.notes?.join('\n') ?? '',
      /^dropped metadata\.hand_note \(only this copy had it, not a copy key\); the old copy is in \.lora-sync\/backups\//,
    );
    for (const e of expected.files) {
      const changed = sha(await readFile(ws.abs(e.path))) !== before.get(e.path);
      assert.equal(changed, writable.includes(e), `${e.path} (${e.expect}) ${changed ? 'was' : 'was not'} written`);
      if (!changed) assert.equal((await stat(ws.abs(e.path))).mtimeMs, mtimes.get(e.path), `${e.path} mtime untouched`);
    }
    for (const e of writable) {
      assert.deepEqual(await copyKeysOf(ws.abs(e.path)), keysBefore.get(e.path), `${e.path} keeps its own keys`);
      await withCheckpoint(ws.abs(e.path), async (c) => {
        const got = await Promise.all(
          c.tensors.map(async (t) => ({
            path: t.path.replace(/^lora_params\./, ''),
            sha256: sha(await readTensorBytes(c, t)),
          })),
        );
        assert.deepEqual(
          got,
          e.source_tensors!.map(({ path, sha256 }) => ({ path, sha256 })),
          `${e.path} has the source's tensors`,
        );
        const info = getKey(getKey(c.root!, 'metadata')!, 'sync_info')!;
        assert.deepEqual(typedForm(getKey(info, 'last_sync_match')!), ['int', '51']);
        assert.deepEqual(typedForm(getKey(info, 'sync_reason')!), ['str', 'LEARNING_UPDATE']);
      });
      assert.equal(ws.status(e.path)!.status, 'IN_SYNC', e.path);
    }
    // history: one SYNC event per LoRA that was synced
    const { events } = await ws.history.read();
    assert.deepEqual(
      events
        .filter((x) => x.event === 'SYNC')
        .map((x) => x.lora_id)
        .sort(),
      [...new Set(writable.map((e) => e.lora_id ?? `name:${e.lora_name}`))].sort(),
    );
    assert.ok(events.every((x) => x.match_idx === 51 && x.reason === 'LEARNING_UPDATE'));
    // a second scan from disk agrees, and a second sync has nothing to write
    const again = await Workspace.open(dir);
    await again.scan();
    for (const e of writable) assert.equal(again.status(e.path)!.status, 'IN_SYNC');
    const res2 = await again.sync(again.plan(), { reason: 'FULL_SYNC' });
    assert.equal(res2.synced, 0);
  });

  it('our own sync record outranks match numbers: a restarted trainer is still STALE, a copy edited after sync is DIVERGED', async () => {
    const { dir, ws } = await fresh();
    dirs.push(dir);
    const copy = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';
    await ws.sync(ws.plan({ loras: ['lora_a'] }), { reason: 'LEARNING_UPDATE' });
    assert.equal(ws.status(copy)!.status, 'IN_SYNC');
    // The trainer retrains the source and its match counter restarted at 3 (lower than the copy's 50).
    await trainerStep(join(dir, '⭐_AKTIF_EN_IYILER/LoRA_A.pt'), { tensor: 'layers.0.lora_A', match: 3 });
    await ws.update(['⭐_AKTIF_EN_IYILER/LoRA_A.pt']);
    assert.equal(ws.status(copy)!.status, 'STALE', 'unchanged since our sync, source moved on');
    // Someone fine-tunes the synced copy in place: its own change, whatever the match numbers say.
    await trainerStep(join(dir, copy), { tensor: 'layers.1.lora_B', match: 99 });
    await ws.update([copy]);
    const s = ws.status(copy)!;
    assert.equal(s.status, 'DIVERGED');
    assert.equal(s.issues[0].type, 'CHANGED_SINCE_SYNC');
  });

  it('a forced sync keeps a byte-identical backup and records the overwrite', async () => {
    const { dir, ws } = await fresh();
    dirs.push(dir);
    const diverged = 'İstanbul_Başakşehir/🎯_DRAW_EXPERTS/LoRA_A_0d0e0f.pt';
    const old = await readFile(join(dir, diverged));
    const plain = ws.plan({ loras: ['lora_a'] });
    assert.equal(plain[0].copies.find((c) => c.path === diverged)!.action, 'refuse');
    const res = await ws.sync(ws.plan({ loras: ['lora_a'], force: true }), { reason: 'MANUAL' });
    const r = res.loras[0].copies.find((c) => c.path === diverged)!;
    assert.equal(r.outcome, 'synced');
    assert.ok(r.backup?.startsWith('.lora-sync/backups/'));
    assert.ok((await readFile(join(dir, r.backup!))).equals(old), 'backup is the old file, byte for byte');
    assert.equal(ws.status(diverged)!.status, 'IN_SYNC');
    const { events } = await ws.history.read();
    assert.ok(events.some((e) => e.event === 'FORCE_OVERWRITE' && e.files?.[0] === diverged && e.backup === r.backup));
  });

  it('a copy changed between plan and write is not overwritten, and is reported', async () => {
    const { dir, ws } = await fresh();
    dirs.push(dir);
    const copy = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';
    const plan = ws.plan({ loras: ['lora_a'] });
    const edited = Buffer.concat([await readFile(join(dir, copy))]);
    await writeFile(join(dir, copy), edited); // same bytes, new mtime: someone saved it
    const after = await readFile(join(dir, copy));
    const res = await ws.sync(plan, { reason: 'MANUAL' });
    const r = res.loras[0].copies.find((c) => c.path === copy)!;
    assert.equal(r.outcome, 'skipped');
    assert.match(r.reason, /changed since the plan/);
    assert.ok((await readFile(join(dir, copy))).equals(after));
    // the other copy of the plan still went through
    assert.equal(res.loras[0].copies.find((c) => c.path === '🏛️_NEWTON_HALL/LoRA_A_7a8b9c.pt')!.outcome, 'synced');
  });
  it('a source changed between plan and write blocks its copies; cancelling stops between copies', async () => {
    const { dir, ws } = await fresh();
    dirs.push(dir);
    const planB = ws.plan({ loras: ['lora_b'] });
    await writeFile(
      join(dir, '⭐_AKTIF_EN_IYILER/LoRA_B.pt'),
      await readFile(join(dir, '⭐_AKTIF_EN_IYILER/LoRA_B.pt')),
    );
    const rb = await ws.sync(planB, { reason: 'MANUAL' });
    const writes = rb.loras[0].copies.filter((c) => c.reason.includes('changed since the plan'));
    assert.ok(writes.length >= 1 && writes.every((c) => c.outcome === 'skipped'));
    assert.equal(rb.synced, 0);
    // Cancel after the first copy: the rest are skipped as cancelled, what was written stays written.
    const { dir: d2, ws: w2 } = await fresh();
    dirs.push(d2);
    let calls = 0;
    const r = await w2.sync(w2.plan(), { reason: 'MANUAL', cancelled: () => calls++ >= 1 });
    assert.equal(r.cancelled, true);
    assert.equal(r.synced, 1);
    assert.ok(r.loras.flatMap((l) => l.copies).filter((c) => c.reason === 'cancelled').length >= 2);
  });
});

describe('status rules (pure, by table)', () => {
  const t = (name: string, digest: string, shape = [4, 16], dtype = 'float32') => ({ name, dtype, shape, digest });
  const entry = (over: Partial<FileEntry>): FileEntry => ({
    path: 'x.pt',
    size: 1,
    mtimeMs: 1,
    mtimeNs: '1000000',
    ino: 1,
    kind: 'lora',
    role: 'copy',
    unsafeGlobals: [],
    loraId: 'l',
    name: 'L',
    tensors: [t('a', '1'), t('b', '2')],
    tensorsDigest: 'T12',
    metaDigest: 'M',
    metaKeys: { 'metadata.x': '1' },
    copyKeys: [],
    syncInfo: { lastSyncMatch: 50 },
    ...over,
  });
  const src = entry({ path: 'src.pt', role: 'source' });
  const rows: Array<[string, Partial<FileEntry>, string]> = [
    ['equal tensors and metadata', {}, 'IN_SYNC'],
    ['equal tensors, other metadata', { metaDigest: 'M2', metaKeys: { 'metadata.x': '2' } }, 'METADATA_DRIFT'],
    [
      'older match, other values',
      { tensors: [t('a', '9'), t('b', '2')], tensorsDigest: 'T92', syncInfo: { lastSyncMatch: 45 } },
      'STALE',
    ],
    ['same match, other values', { tensors: [t('a', '9'), t('b', '2')], tensorsDigest: 'T92' }, 'DIVERGED'],
    [
      'no sync_info, other values',
      { tensors: [t('a', '9'), t('b', '2')], tensorsDigest: 'T92', syncInfo: {} },
      'DIVERGED',
    ],
    ['same match, a tensor missing', { tensors: [t('a', '1')], tensorsDigest: 'T1' }, 'PARAM_COUNT_MISMATCH'],
    [
      'same match, an extra tensor',
      { tensors: [t('a', '1'), t('b', '2'), t('c', '3')], tensorsDigest: 'T123' },
      'PARAM_COUNT_MISMATCH',
    ],
    ['same match, other shape', { tensors: [t('a', '1', [4, 8]), t('b', '2')], tensorsDigest: 'Ts' }, 'SHAPE_MISMATCH'],
    [
      'same match, float64 with equal values',
      { tensors: [t('a', '1', [4, 16], 'float64'), t('b', '2')], tensorsDigest: 'Td' },
      'DTYPE_MISMATCH',
    ],
    [
      'older match, structure changed',
      { tensors: [t('a', '1')], tensorsDigest: 'T1', syncInfo: { lastSyncMatch: 40 } },
      'STALE',
    ],
    [
      'our record: copy untouched since sync, newer match numbers',
      {
        tensors: [t('a', '9'), t('b', '2')],
        tensorsDigest: 'T92',
        syncInfo: { lastSyncMatch: 60, engine: { tensors: 'T92', alg: DIGEST_ALG } },
      },
      'STALE',
    ],
    [
      'our record: copy changed since sync, older match numbers',
      {
        tensors: [t('a', '9'), t('b', '2')],
        tensorsDigest: 'T92',
        syncInfo: { lastSyncMatch: 10, engine: { tensors: 'Tother', alg: DIGEST_ALG } },
      },
      'DIVERGED',
    ],
  ];
  for (const [what, over, want] of rows) {
    it(`${what} -> ${want}`, () => assert.equal(compareWithSource(entry(over), src).status, want));
  }
  it('corrupt and unsafe come first; a copy without a LoRA source is an orphan; two sources are duplicates', () => {
    const g = { id: 'l', name: 'L', sources: [src], copies: [], broken: [] };
    assert.equal(
      statusOf(entry({ kind: 'corrupt', error: { code: 'ZIP_TRUNCATED', message: 'x' } }), g).status,
      'CORRUPT',
    );
    assert.equal(statusOf(entry({ unsafeGlobals: ['posix.system'] }), g).status, 'UNSAFE');
    assert.equal(statusOf(entry({}), { ...g, sources: [] }).status, 'ORPHAN');
    const src2 = entry({ path: 'src2.pt', role: 'source' });
    assert.equal(statusOf(src, { ...g, sources: [src, src2] }).status, 'DUPLICATE_SOURCE');
    assert.equal(statusOf(src, g).status, 'SOURCE');
  });
});
