/**
 * The CLI and the language server run with V8's allocation-site pretenuring off (io/gcTuning.ts),
 * which made the peak memory of a large cold scan fall one way or the other from run to run. Each
 * process is run with `--trace-pretenuring-statistics`, with which V8 prints what it decides for each
 * allocation site: with pretenuring off, it decides nothing. Each process has its control: the same
 * run with the setting made a no-op (test/support/noGcTuning.cjs), which does print decisions. Every
 * run is cold (the cache removed first), so each reads the whole workspace.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSeedWorkspace } from '../../server/src/demo/seedWorkspace';
import { ensureBuilt } from '../support/files';
import { startServer } from '../support/lspServer';

const TRACE = '--trace-pretenuring-statistics';
/** V8's lines for the decisions it made, in what a process wrote. */
const decisions = (out: string) => out.split('\n').filter((l) => / pretenuring: /.test(l)).length;

describe('GC setting: allocation-site pretenuring off in the CLI and the language server', function () {
  this.timeout(180_000);
  let ws: string;
  before(async () => {
    ws = await mkdtemp(join(tmpdir(), 'lora-gc-'));
    await generateSeedWorkspace(ws, { loras: 120, copies: 480 });
  });
  after(() => rm(ws, { recursive: true, force: true }));

  const scanOnce = (mode: string) => {
    const r = spawnSync(
      process.execPath,
      [TRACE, '--import', 'tsx', join(__dirname, '..', 'support', 'scanOnce.ts'), ws, mode],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /scanned \d{3} files/);
    return decisions(r.stdout);
  };

  it('V8 decides for allocation sites during a plain scan, and decides nothing once the setting is loaded', () => {
    const plain = scanOnce('plain');
    assert.ok(plain > 0, `${plain} pretenuring decisions in a plain scan (the control)`);
    assert.equal(scanOnce('tuned'), 0);
  });

  const NO_TUNING = ['-r', join(__dirname, '..', 'support', 'noGcTuning.cjs')];
  const cold = () => rm(join(ws, '.lora-sync'), { recursive: true, force: true });

  it('the CLI applies it', async () => {
    const cli = async (nodeArgs: string[]) => {
      await cold();
      const r = spawnSync(process.execPath, [...nodeArgs, TRACE, ensureBuilt(), 'status', '--all', '--root', ws], {
        encoding: 'utf8',
      });
      assert.ok(r.status === 0 || r.status === 1, r.stderr);
      assert.match(r.stdout, /LoRA_Gen/, 'the status was printed');
      return decisions(r.stdout);
    };
    const control = await cli(NO_TUNING);
    assert.ok(control > 0, `${control} pretenuring decisions with the setting made a no-op (the control)`);
    assert.equal(await cli([]), 0);
  });

  it('the language server applies it (started over IPC, as the client starts it)', async () => {
    const server = async (nodeArgs: string[]) => {
      await cold();
      const s = await startServer(ws, { watch: false }, () => undefined, {}, {}, undefined, {
        nodeArgs: [...nodeArgs, TRACE],
        ipc: true,
      });
      try {
        assert.ok(s.statuses.some((x) => x.state === 'ready'));
        // A clean shutdown, so what V8 printed (buffered on a pipe) is flushed before it is counted.
        const exited = once(s.child, 'exit');
        await s.conn.sendRequest('shutdown');
        await s.conn.sendNotification('exit');
        await exited;
      } finally {
        s.child.kill();
      }
      return decisions(s.log.stdout);
    };
    const control = await server(NO_TUNING);
    assert.ok(control > 0, `${control} pretenuring decisions with the setting made a no-op (the control)`);
    assert.equal(await server([]), 0);
  });
});
