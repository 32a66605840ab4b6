/**
 * The CLI and the language server run with V8's allocation-site pretenuring off (io/gcTuning.ts),
 * which made the peak memory of a large cold scan fall one way or the other from run to run. Each
 * process is run with `--trace-pretenuring-statistics`, with which V8 prints what it decides for each
 * allocation site: with pretenuring off, it decides nothing. A plain Node scan of the same workspace
 * is the control: it does print decisions, so a process that forgot the setting would too.
 */
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
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

  it('the CLI applies it', () => {
    const r = spawnSync(process.execPath, [TRACE, ensureBuilt(), 'status', '--all', '--root', ws], {
      encoding: 'utf8',
    });
    assert.ok(r.status === 0 || r.status === 1, r.stderr);
    assert.match(r.stdout, /LoRA_Gen/, 'the status was printed');
    assert.equal(decisions(r.stdout), 0);
  });

  it('the language server applies it (started over IPC, as the client starts it)', async () => {
    const started = await startServer(ws, { watch: false }, () => undefined, {}, {}, undefined, {
      nodeArgs: [TRACE],
      ipc: true,
    });
    try {
      assert.ok(started.statuses.some((s) => s.state === 'ready'));
      assert.equal(decisions(started.log.stdout), 0, started.log.stdout.slice(0, 500));
    } finally {
      started.child.kill();
    }
  });
});
