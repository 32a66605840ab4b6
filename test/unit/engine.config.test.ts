/**
 * Configuration (lora-sync.json) and safetensors LoRAs through the engine: options are validated
 * and honoured; a safetensors copy is synced with the source's tensors while its own keys stay.
 */
import { strict as assert } from 'node:assert';
import { mkdir, mkdtemp, open, rm, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, ConfigError, DEFAULT_CONFIG } from '../../server/src/engine/config';
import { Workspace } from '../../server/src/engine/workspace';
import { writeSafetensors, readSafetensorsFile } from '../../server/src/formats/safetensors';
import { withCheckpoint } from '../../server/src/formats/checkpoint';
import { readTensorBytes } from '../../server/src/formats/fingerprint';
import { prng, randomF32 } from '../../server/src/demo/loraTree';

const FIX = join(__dirname, '..', 'fixtures', 'workspace');

describe('engine configuration', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lora-cfg-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('defaults fit the seed; lora-sync.json overrides; unknown keys and bad types are errors', async () => {
    assert.deepEqual(await loadConfig(dir), DEFAULT_CONFIG);
    await writeFile(
      join(dir, 'lora-sync.json'),
      JSON.stringify({ sourceFolders: ['CENTRAL'], copyKeys: ['team'], backups: false }),
    );
    const c = await loadConfig(dir);
    assert.deepEqual(c.sourceFolders, ['CENTRAL']);
    assert.deepEqual(c.copyKeys, ['team']);
    assert.equal(c.backups, false);
    assert.deepEqual(c.include, DEFAULT_CONFIG.include);
    await writeFile(join(dir, 'lora-sync.json'), JSON.stringify({ sourceFolder: ['x'] }));
    await assert.rejects(
      loadConfig(dir),
      (e: Error) => e instanceof ConfigError && /unknown option "sourceFolder"/.test(e.message),
    );
    await writeFile(join(dir, 'lora-sync.json'), JSON.stringify({ copyKeys: 'team' }));
    await assert.rejects(loadConfig(dir), ConfigError);
    await writeFile(join(dir, 'lora-sync.json'), '{ not json');
    await assert.rejects(loadConfig(dir), /not valid JSON/);
    // settings (the extension's) apply on top of the file
    await writeFile(join(dir, 'lora-sync.json'), JSON.stringify({ backups: false }));
    assert.equal((await loadConfig(dir, { backups: true })).backups, true);
  });

  it('a custom source folder and exclude are honoured by the scan', async () => {
    await cp(FIX, dir, { recursive: true });
    // Sources now live in "⭐_AKTIF_EN_IYILER" only if configured: call the central folder something else.
    await writeFile(
      join(dir, 'lora-sync.json'),
      JSON.stringify({ sourceFolders: ['NEWTON_HALL'], exclude: ['**/.git/**', '**/.lora-sync/**', 'backup/**'] }),
    );
    const ws = await Workspace.open(dir);
    await ws.scan();
    const r = await ws.report();
    assert.ok(!r.files.some((f) => f.path.startsWith('backup/')), 'excluded folder skipped');
    assert.equal(r.files.find((f) => f.path === '🏛️_NEWTON_HALL/LoRA_A_7a8b9c.pt')!.role, 'source');
    assert.equal(r.files.find((f) => f.path === '⭐_AKTIF_EN_IYILER/LoRA_A.pt')!.role, 'copy');
  });
});

describe('engine with safetensors LoRAs', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lora-st-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  async function write(path: string, seed: number, md: Record<string, string>) {
    const r = prng(seed);
    const fh = await open(path, 'w');
    await writeSafetensors(
      fh,
      [
        { name: 'layers.0.lora_A', dtype: 'F32', shape: [4, 8], data: randomF32(r, 32) },
        { name: 'layers.0.lora_B', dtype: 'F32', shape: [8, 4], data: randomF32(r, 32) },
      ],
      md,
    );
    await fh.close();
  }

  it("statuses and a sync that keeps the copy's own keys", async () => {
    await mkdir(join(dir, '⭐_AKTIF_EN_IYILER'));
    await mkdir(join(dir, 'Liverpool'));
    await write(join(dir, '⭐_AKTIF_EN_IYILER/LoRA_S.safetensors'), 2, {
      id: 'lora_s',
      name: 'LoRA_S',
      generation: '7',
      sync_info: JSON.stringify({ last_sync_match: 50 }),
    });
    await write(join(dir, 'Liverpool/LoRA_S_aa11bb.safetensors'), 1, {
      id: 'lora_s',
      name: 'LoRA_S',
      generation: '6',
      team: 'Liverpool',
      score: '0.9',
      sync_info: JSON.stringify({ last_sync_match: 45 }),
    });
    const ws = await Workspace.open(dir);
    await ws.scan();
    assert.equal(ws.status('Liverpool/LoRA_S_aa11bb.safetensors')!.status, 'STALE');
    const res = await ws.sync(ws.plan(), { reason: 'LEARNING_UPDATE', match: 51 });
    assert.equal(res.synced, 1, JSON.stringify(res.loras));
    assert.equal(ws.status('Liverpool/LoRA_S_aa11bb.safetensors')!.status, 'IN_SYNC');
    const st = await readSafetensorsFile(join(dir, 'Liverpool/LoRA_S_aa11bb.safetensors'));
    assert.equal(st.metadata!.team, 'Liverpool');
    assert.equal(st.metadata!.score, '0.9');
    assert.equal(st.metadata!.generation, '7');
    assert.equal(JSON.parse(st.metadata!.sync_info).last_sync_match, 51);
    const bytes = async (p: string) =>
      withCheckpoint(join(dir, p), async (c) =>
        Buffer.concat(await Promise.all(c.tensors.map((t) => readTensorBytes(c, t)))),
      );
    assert.ok(
      (await bytes('Liverpool/LoRA_S_aa11bb.safetensors')).equals(await bytes('⭐_AKTIF_EN_IYILER/LoRA_S.safetensors')),
    );
  });
});
