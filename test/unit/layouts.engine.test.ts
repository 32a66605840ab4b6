/**
 * The engine on real LoRA layouts (test/fixtures/layouts_workspace, written by
 * test/python/make_layouts_workspace.py with each file's expected status in expected.json): identity
 * (metadata id, sync record, layout name, file name, content), versions (SOURCE / VERSION, the stale
 * message), the no-source hint, sourceFolders globs, embedded hashes, git-lfs pointers, the
 * incremental copy index, the cache keyed by adapter_config.json, and that a non-LoRA file is never
 * read past its header.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, open, readdir, rename, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Workspace } from '../../server/src/engine/workspace';
import { readEntry } from '../../server/src/engine/loraFile';
import { DEFAULT_CONFIG, mergeConfig } from '../../server/src/engine/config';
import { matchesSourceFolder } from '../../server/src/engine/sourceFolders';
import { addSourceFolder } from '../../server/src/engine/sourceFolderEdit';
import { fileKeySync, grewWhileRead, listCheckpoints } from '../../server/src/engine/scanner';
import type { FileReport } from '../../server/src/engine/workspace';
import { diagnosticsFor } from '../../server/src/lsp/diagnostics';
import { inspectWorkspaceFile } from '../../server/src/lsp/views/inspectModel';
import { inspectFile } from '../../server/src/cli/inspect';

const FIX = join(__dirname, '..', 'fixtures', 'layouts_workspace');
interface Expected {
  status: string;
  identified_by?: string;
  version?: string;
  message?: string;
  issue_types?: string[];
  why?: string;
  lora_id?: string;
}
const expected: { files: Record<string, Expected> } = JSON.parse(readFileSync(join(FIX, 'expected.json'), 'utf8'));

const dirs: string[] = [];
async function copyOf(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lora-layouts-'));
  dirs.push(dir);
  await cp(FIX, dir, { recursive: true });
  await age(dir);
  return dir;
}

/** Files an hour old: keys read now are trusted at once (not racily clean), so a warm scan reads nothing. */
async function age(dir: string): Promise<void> {
  const then = new Date(Date.now() - 3_600_000);
  for (const d of await readdir(dir, { recursive: true, withFileTypes: true }))
    if (d.isFile()) await utimes(join(d.parentPath, d.name), then, then);
}
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
});

function byPath(files: FileReport[]): Map<string, FileReport> {
  return new Map(files.map((f) => [f.path, f]));
}

function check(f: FileReport | undefined, path: string, e: Expected): void {
  assert.ok(f, `${path} is reported`);
  assert.equal(f.status, e.status, `${path}: status (${f.message})`);
  if (e.identified_by) assert.equal(f.identified_by, e.identified_by, `${path}: identified_by`);
  if (e.version) assert.equal(f.version, e.version, `${path}: version`);
  if (e.message) assert.equal(f.message, e.message, `${path}: message`);
  if (e.why) assert.equal(f.why, e.why, `${path}: why`);
  if (e.lora_id) assert.equal(f.lora_id, e.lora_id, `${path}: lora_id`);
  if (e.issue_types)
    assert.deepEqual(
      f.issues.map((i) => i.type),
      e.issue_types,
      `${path}: issues`,
    );
}

describe('engine on real LoRA layouts (layouts_workspace)', function () {
  this.timeout(60_000);

  it('every file gets its expected status, identity, version and message', async () => {
    const dir = await copyOf();
    const ws = await Workspace.open(dir);
    await ws.scan({ workers: false });
    const r = await ws.report();
    const files = byPath(r.files);
    const paths = Object.keys(expected.files);
    assert.equal(r.files.length, paths.length, `files: ${r.files.map((f) => f.path).join(', ')}`);
    for (const p of paths) check(files.get(p), p, expected.files[p]);
    assert.equal(r.hints, undefined, 'sources exist: no hint');
    // Every readable LoRA file says how it was identified, its layout and unit.
    for (const f of r.files)
      if (f.status !== 'UNRECOGNIZED' && f.status !== 'CORRUPT') {
        assert.ok(f.identified_by && f.layout && f.unit, `${f.path}: identity fields`);
      }
    // The PEFT unit is its folder.
    assert.deepEqual(files.get('deploy/prod/pixel_lora/adapter_model.safetensors')!.unit, {
      kind: 'folder',
      path: 'deploy/prod/pixel_lora',
    });
    // Two runs of one name are two LoRAs, told apart in their display names only.
    const names = r.loras.filter((l) => l.id.startsWith('name:pixel_style@')).map((l) => l.name);
    assert.equal(names.length, 2);
    assert.ok(
      names.every((n) => /^pixel_style \(run \d{6}\)$/.test(n)),
      names.join(', '),
    );
    assert.equal(r.loras.find((l) => l.id === 'name:pixel_style')?.name, 'pixel_style');
    // Embedded hashes: details name the key; a mismatch keeps IN_SYNC.
    const bad = files.get('ComfyUI/models/loras/pixel_style_badhash.safetensors')!;
    assert.deepEqual(bad.issues.map((i) => i.param).sort(), [
      'modelspec.hash_sha256',
      'sshs_legacy_hash',
      'sshs_model_hash',
    ]);
    assert.match(bad.issues.find((i) => i.param === 'sshs_model_hash')!.detail, /hashed nothing/);
    // In VS Code: a warning for the sound file, naming the keys; none for its in-sync neighbour.
    const diags = diagnosticsFor(bad, undefined, (r) => `file:///${r}`);
    assert.deepEqual(
      diags.map((d) => [d.severity, d.code]),
      [[2, 'EMBEDDED_HASH_MISMATCH']],
    );
    assert.match(String(diags[0].message), /sshs_legacy_hash says 0badc0de/);
    assert.deepEqual(diagnosticsFor(files.get('ComfyUI/models/loras/pixel_style.safetensors')!, undefined, String), []);
    // The LFS pointer says what to do.
    assert.match(files.get('lfs/pixel_style.safetensors')!.message, /git lfs pull/);
    // The ambiguous copy names both LoRAs.
    assert.match(
      files.get('ComfyUI/models/loras/renamed_by_deploy.pt')!.message,
      /name:pixel_style, name:pixel_style@1874263015/,
    );
    // A sync plan never writes VERSION files or sources; stale copies are written.
    const plan = ws.plan({});
    const planned = new Map(plan.flatMap((l) => l.copies.map((c) => [c.path, c.action] as const)));
    assert.equal(planned.get('stable-diffusion-webui/models/Lora/pixel_style.safetensors'), 'write');
    assert.equal(planned.get('train/kohya/pixel_style-000008.safetensors'), undefined);
  });

  it('inspect (CLI and inspector) gives the ecosystem hashes and how the file was identified', async () => {
    const dir = await copyOf();
    const ws = await Workspace.open(dir);
    await ws.scan({ workers: false });
    const m = await inspectWorkspaceFile(ws, join(dir, 'ComfyUI/models/loras/pixel_style_badhash.safetensors'));
    assert.equal(m.identifiedBy, 'layout_name');
    assert.equal(m.layout, 'kohya');
    assert.equal(m.identity.id, 'name:pixel_style@1874263015');
    assert.equal(m.hashes?.autoV2.length, 10);
    assert.equal(m.hashes?.autoV3?.length, 12);
    assert.deepEqual(m.hashes?.embeddedMismatches.map((x) => x.key).sort(), [
      'modelspec.hash_sha256',
      'sshs_legacy_hash',
      'sshs_model_hash',
    ]);
    const content = await inspectWorkspaceFile(ws, join(dir, 'deploy/canary/sql-exp/adapter_model.safetensors'));
    assert.equal(content.identifiedBy, 'content');
    assert.equal(content.identity.id, 'name:pixel_lora', 'the LoRA it belongs to, not its own name');
    const good = await inspectFile(join(dir, 'train/kohya/pixel_style.safetensors'));
    // kohya embedded the data hash: AutoV3 is its first 12 hex, and nothing disagrees.
    const md = good.metadata as Record<string, string>;
    assert.equal(good.hashes?.dataSha256, md.sshs_model_hash);
    assert.equal(good.hashes?.autoV3, md.sshs_model_hash.slice(0, 12));
    assert.deepEqual(good.hashes?.embeddedMismatches, []);
  });

  it('a warm start from the cache gives the same report', async () => {
    const dir = await copyOf();
    const a = await Workspace.open(dir);
    await a.scan({ workers: false });
    const first = await a.report();
    const b = await Workspace.open(dir);
    const s = await b.scan({ workers: false });
    assert.equal(s.read, 0, 'nothing re-read');
    assert.deepEqual((await b.report()).files, first.files);
  });

  it('identity stays right whatever order files arrive in: copies first, then their sources (incremental)', async () => {
    const dir = await copyOf();
    // Sources moved away: every copy is an orphan (or identified by its own name only).
    await rename(join(dir, 'train'), join(dir, 'train_away'));
    await rename(join(dir, 'peft'), join(dir, 'peft_away'));
    const ws = await Workspace.open(dir);
    await ws.scan({ workers: false });
    let f = byPath((await ws.report()).files);
    assert.equal(f.get('deploy/plain/my_lora_edit.ckpt')!.status, 'ORPHAN');
    assert.equal(f.get('deploy/canary/sql-exp/adapter_model.safetensors')!.status, 'ORPHAN');
    // The sources come back one by one through incremental updates.
    await rename(join(dir, 'train_away'), join(dir, 'train'));
    await rename(join(dir, 'peft_away'), join(dir, 'peft'));
    await ws.update(
      [
        'train/plain/my_lora.pth',
        'peft/pixel_lora/adapter_model.safetensors',
        'peft/pixel_lora/checkpoint-500/adapter_model.safetensors',
        'train/kohya/pixel_style.safetensors',
        'train/kohya/pixel_style-000008.safetensors',
      ].map((p) => join(dir, p)),
    );
    f = byPath((await ws.report()).files);
    check(f.get('deploy/plain/my_lora_edit.ckpt'), 'my_lora_edit', expected.files['deploy/plain/my_lora_edit.ckpt']);
    const canary = 'deploy/canary/sql-exp/adapter_model.safetensors';
    check(f.get(canary), canary, expected.files[canary]);
    const stale = 'deploy/staging/pixel_lora/adapter_model.safetensors';
    check(f.get(stale), stale, expected.files[stale]);
    // And the source goes again: its content copies fall back to orphans.
    await unlink(join(dir, 'train/plain/my_lora.pth'));
    await ws.update([join(dir, 'train/plain/my_lora.pth')]);
    f = byPath((await ws.report()).files);
    assert.equal(f.get('deploy/plain/my_lora_edit.ckpt')!.status, 'ORPHAN');
    assert.equal(f.get('deploy/plain/my_lora_edit.ckpt')!.identified_by, 'file_name');
  });

  it('a copy whose sync record names a source belongs to that LoRA, whatever its name', async () => {
    const dir = await copyOf();
    const ws = await Workspace.open(dir);
    await ws.scan({ workers: false });
    // Sync the stale staging adapter, then rename its folder: the record written by the sync ties it.
    const plan = ws.plan({}).filter((l) => l.id === 'name:pixel_lora');
    const res = await ws.sync(plan, { reason: 'MANUAL' });
    const synced = res.loras.flatMap((l) => l.copies).filter((c) => c.outcome === 'synced');
    assert.ok(
      synced.some((c) => c.path === 'deploy/staging/pixel_lora/adapter_model.safetensors'),
      JSON.stringify(res.loras.flatMap((l) => l.copies)),
    );
    await rename(join(dir, 'deploy/staging/pixel_lora'), join(dir, 'deploy/staging/renamed'));
    await ws.scan({ workers: false });
    const f = byPath((await ws.report()).files).get('deploy/staging/renamed/adapter_model.safetensors')!;
    assert.equal(f.identified_by, 'sync_record');
    assert.equal(f.status, 'IN_SYNC');
  });

  it('an adapter_config.json change is noticed by a warm scan (the cache keys it)', async () => {
    const dir = await copyOf();
    const a = await Workspace.open(dir);
    await a.scan({ workers: false });
    const rel = 'deploy/prod/pixel_lora/adapter_model.safetensors';
    assert.equal(a.status(rel)!.status, 'IN_SYNC');
    const cfgPath = join(dir, 'deploy/prod/pixel_lora/adapter_config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    cfg.r = 64;
    await writeFile(cfgPath, JSON.stringify(cfg));
    const b = await Workspace.open(dir);
    const s = await b.scan({ workers: false });
    assert.equal(s.read, 1, 'only the adapter whose config changed is read again');
    assert.equal(b.status(rel)!.status, 'METADATA_DRIFT');
    assert.deepEqual(
      b.status(rel)!.issues.map((i) => i.param),
      ['adapter_config.r'],
    );
    // Live: the watcher hands the config's path over; the adapter beside it is read again.
    cfg.r = 4;
    await writeFile(cfgPath, `${JSON.stringify(cfg)}\n`);
    const changes = await b.update([cfgPath]);
    assert.deepEqual(changes, [{ path: rel, before: 'METADATA_DRIFT', after: 'IN_SYNC' }]);
  });

  it('without a source folder: one hint for the workspace, no orphan line per file', async () => {
    const dir = await copyOf();
    await unlink(join(dir, 'lora-sync.json'));
    const ws = await Workspace.open(dir);
    await ws.scan({ workers: false });
    const r = await ws.report();
    assert.equal(r.hints?.length, 1);
    assert.match(r.hints![0], /sourceFolders/);
    assert.match(r.hints![0], /Use Folder as Source/);
    assert.ok(r.files.every((f) => f.role !== 'source'));
    // Designating the folder (what the Explorer command does) makes the training output the source.
    await addSourceFolder(dir, 'train/kohya');
    const cfg = JSON.parse(readFileSync(join(dir, 'lora-sync.json'), 'utf8'));
    assert.deepEqual(cfg.sourceFolders, [...DEFAULT_CONFIG.sourceFolders, 'train/kohya']);
    const again = await Workspace.open(dir);
    await again.scan({ workers: false });
    const r2 = await again.report();
    assert.equal(r2.hints, undefined);
    assert.equal(byPath(r2.files).get('train/kohya/pixel_style.safetensors')!.status, 'SOURCE');
  });

  it('addSourceFolder keeps the other keys of lora-sync.json and adds a folder once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lora-cfg-'));
    dirs.push(dir);
    await writeFile(
      join(dir, 'lora-sync.json'),
      JSON.stringify({ copyKeys: ['team'], sourceFolders: ['a/b'] }, null, 2),
    );
    assert.deepEqual((await addSourceFolder(dir, 'out/run1')).value, 'out/run1');
    assert.deepEqual((await addSourceFolder(dir, 'out/run1/')).sourceFolders, ['a/b', 'out/run1']);
    assert.equal((await addSourceFolder(dir, 'top')).value, 'top/', 'one name: stored as a path');
    const cfg = JSON.parse(readFileSync(join(dir, 'lora-sync.json'), 'utf8'));
    assert.deepEqual(cfg, { copyKeys: ['team'], sourceFolders: ['a/b', 'out/run1', 'top/'] });
    await writeFile(join(dir, 'lora-sync.json'), '{ not json');
    await assert.rejects(addSourceFolder(dir, 'x/y'), /not valid JSON/);
  });

  it('sourceFolders: a plain value is contained in a folder name, a value with * ? or / is a glob on the folder path', () => {
    const v = ['AKTIF_EN_IYILER', 'train/**', 'output/*', 'peft/pixel_lora'];
    assert.ok(matchesSourceFolder('⭐_AKTIF_EN_IYILER/LoRA_A.pt', v));
    assert.ok(matchesSourceFolder('team/⭐_AKTIF_EN_IYILER/x/LoRA_A.pt', v));
    assert.ok(matchesSourceFolder('train/kohya/a.safetensors', v));
    assert.ok(matchesSourceFolder('output/run1/a.safetensors', v));
    assert.ok(matchesSourceFolder('output/run1/deeper/a.safetensors', v), 'below a matching folder');
    assert.ok(matchesSourceFolder('peft/pixel_lora/checkpoint-500/adapter_model.bin', v));
    assert.ok(!matchesSourceFolder('a/train/kohya/a.safetensors', v), 'globs are anchored at the root');
    assert.ok(!matchesSourceFolder('train.safetensors', v));
    assert.ok(!matchesSourceFolder('peft/other/adapter_model.bin', v));
    assert.ok(!matchesSourceFolder('models/loras/a.safetensors', v));
    assert.equal(mergeConfig(DEFAULT_CONFIG, { sourceFolders: ['train/'] }, 't').sourceFolders[0], 'train/');
    assert.ok(matchesSourceFolder('train/a.pt', ['train/']), 'a trailing slash names the folder');
    // Answers are remembered per folder and per list of values: asked again, or for another file of
    // the same folder, the same; another list of values is judged on its own.
    for (let i = 0; i < 2; i++) {
      assert.ok(matchesSourceFolder('train/kohya/b.safetensors', v));
      assert.ok(!matchesSourceFolder('models/loras/b.safetensors', v));
      assert.ok(!matchesSourceFolder('train/kohya/b.safetensors', ['output/*']));
      assert.ok(matchesSourceFolder('models/loras/b.safetensors', ['loras']));
    }
  });

  it('growing files: a recent file whose key changed across its read waits; an old or settled one does not; partial downloads are never listed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lora-grow-'));
    dirs.push(dir);
    const abs = join(dir, 'a.safetensors');
    await writeFile(abs, 'x'.repeat(100));
    const key = fileKeySync(abs)!;
    const f = { abs, rel: 'a.safetensors', key };
    assert.equal(grewWhileRead(f, 1000, Date.now()), false, 'unchanged');
    await writeFile(abs, 'x'.repeat(200)); // the trainer is still writing
    assert.equal(grewWhileRead(f, 1000, Date.now()), true, 'size changed within the settle window');
    assert.equal(grewWhileRead(f, 1000, Date.now() + 60_000), false, 'an old mtime is never looked at again');
    assert.equal(grewWhileRead(f, 0, Date.now()), false, 'settleMs 0: no check');
    const f2 = { abs, rel: 'a.safetensors', key: fileKeySync(abs)! };
    await writeFile(`${abs}.aria2`, '');
    assert.equal(grewWhileRead(f2, 1000, Date.now()), true, 'aria2 is still downloading it');
    await writeFile(join(dir, 'b.safetensors.part'), '');
    await writeFile(join(dir, 'c.safetensors.incomplete'), '');
    const listed = await listCheckpoints(dir, { ...DEFAULT_CONFIG, include: ['**/*'] });
    assert.deepEqual(listed.files.sort(), ['a.safetensors', 'a.safetensors.aria2']);
  });

  it('a non-LoRA file is never read past its header: a 6 GB sparse model scans in moments', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lora-big-'));
    dirs.push(dir);
    const n = 6 * 1024 ** 3;
    const header = JSON.stringify({
      __metadata__: { format: 'pt' },
      'model.layers.0.mlp.weight': { dtype: 'F32', shape: [n / 4], data_offsets: [0, n] },
    });
    const padded = header + ' '.repeat((8 - (header.length % 8)) % 8);
    const head = Buffer.alloc(8 + padded.length);
    head.writeBigUInt64LE(BigInt(padded.length), 0);
    head.write(padded, 8, 'latin1');
    const abs = join(dir, 'model.safetensors');
    const fh = await open(abs, 'w');
    await fh.write(head, 0, head.length, 0);
    await fh.truncate(head.length + n); // sparse: no blocks written
    await fh.close();
    // Count the bytes read: every read of the engine goes through FileHandle.read or fs.readSync.
    const fs = require('node:fs') as typeof import('node:fs');
    let bytes = 0;
    const origSync = fs.readSync;
    (fs as { readSync: unknown }).readSync = (...a: Parameters<typeof fs.readSync>) => {
      const r = origSync(...a);
      bytes += r;
      return r;
    };
    const t0 = Date.now();
    let e: Awaited<ReturnType<typeof readEntry>>;
    try {
      e = await readEntry(abs, 'model.safetensors', DEFAULT_CONFIG);
    } finally {
      (fs as { readSync: unknown }).readSync = origSync;
    }
    assert.equal(e.kind, 'unrecognized');
    assert.equal(e.why, 'no LoRA tensor names');
    assert.ok(bytes < 1 << 20, `read ${bytes} bytes synchronously`);
    // Hashing 6 GB (even of holes) takes seconds; the header takes milliseconds.
    assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
  });
});
