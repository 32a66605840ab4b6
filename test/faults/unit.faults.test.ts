/**
 * A folder unit (PEFT: adapter_model.safetensors + adapter_config.json) is two writes. A sync killed
 * between them (SIGKILL at the config's first write step, through the fault seam), or whose config
 * write fails (ENOSPC), leaves weights equal to the source's and the old config: the next status
 * says METADATA_DRIFT, and the next plain sync finishes the unit.
 */
import { strict as assert } from 'node:assert';
import { copyFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Workspace } from '../../server/src/engine/workspace';
import { addFigure } from './figures';
import { CLOCK, isTemp, listTree, privateCli, runCli, tempDir } from './support';

const SEC = 'interruption';
const LAYOUTS = join(__dirname, '..', 'fixtures', 'layouts');
const SRC = 'train/pixel_lora';
const PROD = 'deploy/prod/pixel_lora';
const WEIGHTS = `${PROD}/adapter_model.safetensors`;
const OLD_CONFIG = '{"peft_type": "LORA", "r": 4, "peft_version": "0.12.0"}\n';

async function unitWorkspace(dir: string): Promise<void> {
  const put = async (fixture: string, rel: string) => {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await copyFile(join(LAYOUTS, fixture), join(dir, rel));
  };
  await writeFile(join(dir, 'lora-sync.json'), JSON.stringify({ sourceFolders: ['train'] }));
  await put('peft/pixel_lora/adapter_model.safetensors', `${SRC}/adapter_model.safetensors`);
  await put('peft/pixel_lora/adapter_config.json', `${SRC}/adapter_config.json`);
  await put('peft/pixel_lora/checkpoint-500/adapter_model.safetensors', WEIGHTS);
  await writeFile(join(dir, PROD, 'adapter_config.json'), OLD_CONFIG);
}

const dataOf = async (abs: string) => {
  const b = await readFile(abs);
  return b.subarray(8 + Number(b.readBigUInt64LE(0)));
};

async function statusOf(dir: string): Promise<string | undefined> {
  const ws = await Workspace.open(dir);
  await ws.scan();
  return ws.status(WEIGHTS)?.status;
}

/** After the interruption: new weights, old config, drift reported; the next sync finishes; nothing half-written is left. */
async function finishes(dir: string, cli: string): Promise<void> {
  assert.ok((await dataOf(join(dir, WEIGHTS))).equals(await dataOf(join(dir, SRC, 'adapter_model.safetensors'))));
  assert.equal(await readFile(join(dir, PROD, 'adapter_config.json'), 'utf8'), OLD_CONFIG);
  assert.equal(await statusOf(dir), 'METADATA_DRIFT');
  const r = await runCli(cli, ['sync', '--all', '--root', dir], { env: { LORA_SYNC_FAULTS: CLOCK } });
  assert.equal(r.code, 0, r.out + r.err);
  assert.ok(
    (await readFile(join(dir, PROD, 'adapter_config.json'))).equals(
      await readFile(join(dir, SRC, 'adapter_config.json')),
    ),
  );
  assert.equal(await statusOf(dir), 'IN_SYNC');
  assert.deepEqual((await listTree(dir)).filter(isTemp), []);
}

describe('interruption: a folder unit killed between its two writes', function () {
  this.timeout(120_000);
  let tmp: string;
  let cli: string;
  before(async () => {
    tmp = await tempDir('lora-unit-');
    cli = await privateCli(tmp);
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  it('SIGKILL as the config write starts: METADATA_DRIFT, and the next sync finishes the unit', async () => {
    // The step numbers of one run, from a traced twin of the workspace.
    const twin = join(tmp, 'twin');
    await mkdir(twin);
    await unitWorkspace(twin);
    const traced = await runCli(cli, ['sync', '--all', '--force', '--root', twin], {
      env: { LORA_SYNC_FAULTS: `trace;${CLOCK}` },
    });
    assert.equal(traced.code, 0, traced.out + traced.err);
    const m = /lora-sync fault: point (\d+) write:create \S*adapter_config\.json/.exec(traced.err);
    assert.ok(m, traced.err);
    const dir = join(tmp, 'killed');
    await mkdir(dir);
    await unitWorkspace(dir);
    const r = await runCli(cli, ['sync', '--all', '--force', '--root', dir], {
      env: { LORA_SYNC_FAULTS: `kill@${m[1]};${CLOCK}` },
    });
    assert.equal(r.signal, 'SIGKILL', r.out + r.err);
    assert.match(r.err, /kill \d+ write:create \S*adapter_config\.json/);
    await finishes(dir, cli);
    addFigure(SEC, 'folder-unit kills between the two writes', 1);
  });

  it('ENOSPC on the config write: reported as failed with the weights written, then finished', async () => {
    const dir = join(tmp, 'enospc');
    await mkdir(dir);
    await unitWorkspace(dir);
    const r = await runCli(cli, ['sync', '--all', '--force', '--json', '--root', dir], {
      env: { LORA_SYNC_FAULTS: `ENOSPC@write:create~adapter_config.json;${CLOCK}` },
    });
    assert.match(r.out, /was written but its adapter_config\.json was not/, r.out + r.err);
    await finishes(dir, cli);
  });
});
