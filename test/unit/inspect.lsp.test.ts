/**
 * `loraSync/inspect` and the one-copy sync (`copies` on plan and sync) over the real language server
 * (dist/server.js over stdio) on the torch-written workspace: the view model of a copy by its URI
 * (an NFD-spelled path too), clear errors for a file outside the workspace folders, a non-file URI
 * and a missing file, and "Sync this copy" writing that copy alone.
 */
import { strict as assert } from 'node:assert';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  createMessageConnection,
  type MessageConnection,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
} from 'vscode-jsonrpc/node';
import { copyFixtureWorkspace, ensureBuilt } from '../support/files';
import {
  InspectRequest,
  PlanRequest,
  type ServerStatus,
  StatusChangedNotification,
  SyncRequest,
} from '../../server/src/protocol/messages';

const STALE = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';
const DRIFT = '🏛️_NEWTON_HALL/LoRA_A_7a8b9c.pt';
const DTYPE_NFD = `${'Beşiktaş/🆚_VS_Galatasaray'.normalize('NFD')}/LoRA_B_b9babb.pt`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('loraSync/inspect over the language server', function () {
  this.timeout(60000);
  let dir: string;
  let child: ChildProcess;
  let conn: MessageConnection;
  let stderr = '';
  const uriOf = (rel: string) => pathToFileURL(join(dir, rel)).toString();
  const sha = async (rel: string) =>
    createHash('sha256')
      .update(await readFile(join(dir, rel)))
      .digest('hex');

  before(async () => {
    dir = await copyFixtureWorkspace('lora-inspect-lsp-');
    child = spawn(process.execPath, [join(ensureBuilt(), '..', 'server.js'), '--stdio'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stderr!.on('data', (b) => (stderr += b));
    conn = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
    const statuses: ServerStatus[] = [];
    conn.onNotification(StatusChangedNotification, (s: ServerStatus) => {
      statuses.push(s);
    });
    conn.onNotification('textDocument/publishDiagnostics', () => undefined);
    conn.onNotification('window/logMessage', () => undefined);
    conn.listen();
    const uri = pathToFileURL(dir).toString();
    await conn.sendRequest('initialize', {
      processId: process.pid,
      rootUri: uri,
      capabilities: {},
      workspaceFolders: [{ uri, name: 'ws' }],
      initializationOptions: { watch: false },
    });
    await conn.sendNotification('initialized', {});
    for (let i = 0; !statuses.some((s) => s.state === 'ready'); i++) {
      if (i > 400) throw new Error(`the server did not get ready: ${stderr}`);
      await sleep(50);
    }
  });

  after(async () => {
    if (child.exitCode === null) child.kill();
    conn.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers with the view model of a copy: status, source, per-tensor differences, folder', async () => {
    const m = await conn.sendRequest(InspectRequest, { uri: uriOf(STALE) });
    assert.equal(m.uri, pathToFileURL(dir).toString());
    assert.equal(m.root, dir);
    assert.equal(m.path, STALE);
    assert.equal(m.status, 'STALE');
    assert.equal(m.role, 'copy');
    assert.equal(m.source!.path, '⭐_AKTIF_EN_IYILER/LoRA_A.pt');
    assert.deepEqual(m.diff!.counts, { equal: 0, differs: 4, shape: 0, dtype: 0, missing: 0, extra: 0 });
    assert.equal(m.tensors[0].diff!.maxAbsDiff, 3.6665157079696655);
    assert.equal(
      m.metadata!.children!.find((c) => c.key === 'metadata')!.children!.find((c) => c.key === 'team')!.mark,
      'copy',
    );
  });

  it('takes the on-disk spelling of a path (NFD folders) and reports it in NFC', async () => {
    const m = await conn.sendRequest(InspectRequest, { uri: uriOf(DTYPE_NFD) });
    assert.equal(m.path, DTYPE_NFD.normalize('NFC'));
    assert.equal(m.status, 'DTYPE_MISMATCH');
    assert.equal(m.tensors.find((t) => t.name === 'layers.1.lora_B')!.diff!.kind, 'dtype');
  });

  it('refuses with a clear error a file outside the workspace folders, a non-file URI, a missing file', async () => {
    const rejects = (params: object, re: RegExp) =>
      assert.rejects(
        conn.sendRequest(InspectRequest, params as never),
        (e: unknown) => e instanceof ResponseError && re.test(e.message),
      );
    await rejects(
      { uri: pathToFileURL(join(__dirname, '..', 'fixtures', 'torch', 'seed_source.pt')).toString() },
      /is not inside an open workspace folder/,
    );
    await rejects({ uri: 'untitled:Untitled-1' }, /only files on disk/);
    await rejects({ uri: uriOf('nowhere/LoRA_Z.pt') }, /does not exist/);
    await rejects({}, /needs the uri/);
  });

  it("plans and syncs one copy alone (copies), leaving the LoRA's other writable copy as it was", async () => {
    const plan = await conn.sendRequest(PlanRequest, { lora: 'lora_a', copies: [STALE] });
    assert.deepEqual(
      plan.folders[0].plan.map((l) => l.copies.map((c) => [c.path, c.action])),
      [[[STALE, 'write']]],
    );
    await assert.rejects(
      conn.sendRequest(SyncRequest, { lora: 'lora_a', copies: 'x' as never }),
      (e: unknown) => e instanceof ResponseError && /copies must be a list/.test(e.message),
    );
    const drift = await sha(DRIFT);
    const stale = await sha(STALE);
    const res = await conn.sendRequest(SyncRequest, { lora: 'lora_a', copies: [STALE], reason: 'TEST' });
    assert.deepEqual([res.synced, res.failed, res.skipped, res.refused], [1, 0, 0, 0]);
    assert.deepEqual(
      res.folders[0].loras.map((l) => l.copies.map((c) => c.path)),
      [[STALE]],
    );
    assert.notEqual(await sha(STALE), stale, 'the copy was written');
    assert.equal(await sha(DRIFT), drift, 'the other writable copy (METADATA_DRIFT) was not');
    const after = await conn.sendRequest(InspectRequest, { uri: uriOf(STALE) });
    assert.equal(after.status, 'IN_SYNC');
    assert.deepEqual(after.diff!.counts, { equal: 4, differs: 0, shape: 0, dtype: 0, missing: 0, extra: 0 });
    assert.equal(after.syncInfo!.byLoraSync, true);
    assert.equal(after.syncInfo!.reason, 'TEST');
    const meta = after.metadata!.children!.find((c) => c.key === 'metadata')!;
    assert.equal(meta.children!.find((c) => c.key === 'score')!.type, 'tuple', 'the copy keeps its own keys');
  });
});
