/**
 * An untrusted workspace: the language server (dist/server.js, what the extension starts) in
 * read-only mode reads and reports but never writes. Every request that could write is refused or
 * writes nothing (sync of all, of one LoRA, forced; verify, which would record history; rescan, which
 * would save the cache), auto-sync stays off when a source changes, and what a trusted run would
 * clean up (a killed sync's temporary file and lock) is left alone: every file keeps its bytes and
 * its mtime, and no file appears.
 */
import { strict as assert } from 'node:assert';
import { type ChildProcess, spawnSync } from 'node:child_process';
import { lstatSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type MessageConnection, ResponseError } from 'vscode-jsonrpc/node';
import { trainerStep } from '../../server/src/demo/trainerStep';
import { lockPath } from '../../server/src/engine/loraLock';
import {
  CopyMapRequest,
  HistoryRequest,
  PlanRequest,
  RescanRequest,
  StatsRequest,
  SyncRequest,
  VerifyRequest,
} from '../../server/src/protocol/messages';
import { copyFixtureWorkspace, sha256File } from '../support/files';
import { sleep, startServer } from '../support/lspServer';
import { addFigure } from './figures';
import { listTree } from './support';

const SOURCE_A = '⭐_AKTIF_EN_IYILER/LoRA_A.pt';

describe('untrusted workspace: the language server reads and reports, never writes', function () {
  this.timeout(60_000);
  let dir: string;
  let child: ChildProcess;
  let conn: MessageConnection;
  let diagnosed = 0;
  const leftovers: string[] = [];

  /** Every file with its bytes and mtime (links not followed). */
  async function state(): Promise<Map<string, string>> {
    const m = new Map<string, string>();
    for (const rel of await listTree(dir))
      m.set(rel, `${await sha256File(join(dir, rel))} ${lstatSync(join(dir, rel), { bigint: true }).mtimeNs}`);
    return m;
  }

  before(async () => {
    dir = await copyFixtureWorkspace('lora-untrusted-');
    // What a killed sync leaves, which a trusted run would clean up.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const temp = `Manchester_United/🎯_WIN_EXPERTS/.LoRA_A_4d5e6f.pt.lora-sync-tmp-${dead}-0badf00d`;
    await writeFile(join(dir, temp), 'half a file');
    await mkdir(join(dir, '.lora-sync', 'locks'), { recursive: true });
    await writeFile(
      lockPath(dir, 'lora_a'),
      JSON.stringify({ pid: dead, host: hostname(), since: '2026-01-01T00:00:00Z', lora: 'lora_a' }),
    );
    leftovers.push(temp, `.lora-sync/locks/${lockPath(dir, 'lora_a').split('/').pop()}`);
    // Auto-sync asked for, but the workspace is untrusted: it must stay off.
    const s = await startServer(
      dir,
      { settings: { debounceMs: 50, settleMs: 200, autoSync: 'onSourceChange' }, watch: true, readOnly: true },
      (p) => {
        if (p.diagnostics.length) diagnosed++;
      },
    );
    ({ child, conn } = s);
  });
  after(async () => {
    if (child?.exitCode === null) child.kill();
    conn?.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers reads, refuses every sync, and leaves every byte and mtime as it was, even when a source changes under auto-sync', async () => {
    assert.ok(diagnosed > 0, 'problems are reported');
    const before = await state();
    const refused = (e: unknown) => e instanceof ResponseError && /not trusted/.test(e.message);
    for (const params of [
      { all: true },
      { lora: 'lora_a' },
      { all: true, force: true },
      { lora: 'LoRA_B', copies: ['💎_PERFECT_HYBRID_HALL/LoRA_B_b0b1b2.pt'] },
    ]) {
      await assert.rejects(conn.sendRequest(SyncRequest, params), refused, JSON.stringify(params));
      addFigure('untrusted workspace', 'write requests refused', 1);
    }
    // Reads are answered (and write nothing: no history for verify, no cache for rescan).
    const map = await conn.sendRequest(CopyMapRequest, {});
    assert.ok(map.folders[0].files.length > 20);
    assert.equal((await conn.sendRequest(VerifyRequest, {})).is_consistent, false);
    await conn.sendRequest(RescanRequest, {});
    assert.ok((await conn.sendRequest(PlanRequest, { force: true })).folders[0].plan.length > 0);
    await conn.sendRequest(StatsRequest, {});
    assert.deepEqual((await conn.sendRequest(HistoryRequest, {})).folders[0].events, []);
    addFigure('untrusted workspace', 'read requests answered without writing', 5);
    assert.deepEqual(await state(), before, 'a request wrote something');

    // A trainer step on a source: auto-sync would write its STALE copies in a trusted workspace.
    await trainerStep(join(dir, SOURCE_A), { match: 51 });
    const changed = await state();
    await sleep(2000); // settle + debounce + what auto-sync would have done
    assert.deepEqual(await state(), changed, 'something was written after the source changed');
    for (const l of leftovers) assert.ok(changed.has(l), `${l} was cleaned up: that is a write`);
    assert.deepEqual(
      [...changed.keys()].filter((k) => !before.has(k)),
      [],
      'a file appeared',
    );
  });
});
