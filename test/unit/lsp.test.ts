/**
 * The language server as a process (dist/server.js over stdio) on the torch-written workspace: the
 * diagnostics of the first scan (exactly the problem files, with code, severity and the source as
 * related information), `loraSync/copyMap`, `loraSync/sync` (copies written on disk, their
 * diagnostics cleared, DIVERGED ones kept), a change on disk seen by the watcher, bad requests
 * answered with errors, and a clean shutdown.
 */
import { strict as assert } from 'node:assert';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { generateSeedWorkspace } from '../../server/src/demo/seedWorkspace';
import { join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { MessageConnection, ResponseError } from 'vscode-jsonrpc/node';
import { type Diagnostic, DiagnosticSeverity } from 'vscode-languageserver-protocol';
import { copyFixtureWorkspace } from '../support/files';
import { sleep, startServer, until } from '../support/lspServer';
import { trainerStep } from '../../server/src/demo/trainerStep';
import {
  CopyMapRequest,
  type ServerStatus,
  ServerStatusRequest,
  SyncRequest,
} from '../../server/src/protocol/messages';

const FIX = join(__dirname, '..', 'fixtures', 'workspace');
interface Expected {
  path: string;
  expect: string;
  source?: string | null;
  sync_blocked?: string;
}
const expected: { files: Expected[] } = JSON.parse(require('node:fs').readFileSync(join(FIX, 'expected.json'), 'utf8'));
const SOUND = new Set(['SOURCE', 'IN_SYNC', 'UNRECOGNIZED']);
const ERRORS = new Set([
  'CORRUPT',
  'UNSAFE',
  'DIVERGED',
  'PARAM_COUNT_MISMATCH',
  'SHAPE_MISMATCH',
  'DTYPE_MISMATCH',
  'DUPLICATE_SOURCE',
]);
const severity = (s: string) =>
  ERRORS.has(s)
    ? DiagnosticSeverity.Error
    : s === 'METADATA_DRIFT'
      ? DiagnosticSeverity.Information
      : DiagnosticSeverity.Warning;

describe('language server over stdio', function () {
  this.timeout(60000);
  let dir: string;
  let child: ChildProcess;
  let conn: MessageConnection;
  let log = { stderr: '', messages: [] as string[] };
  /** Every publishDiagnostics, in order, with the path (relative, NFC) it is about. */
  const published: Array<{ rel: string; uri: string; diagnostics: Diagnostic[] }> = [];
  const current = new Map<string, Diagnostic[]>();
  let statuses: ServerStatus[] = [];
  const relOf = (uri: string) => relative(dir, fileURLToPath(uri)).split(sep).join('/').normalize('NFC');
  const problems = () => new Map([...current].filter(([, d]) => d.length));
  const sha = async (rel: string) =>
    createHash('sha256')
      .update(await readFile(join(dir, rel)))
      .digest('hex');

  before(async () => {
    dir = await copyFixtureWorkspace('lora-lsp-');
    const s = await startServer(dir, { settings: { debounceMs: 50, settleMs: 200 }, watch: true }, (p) => {
      const rel = relOf(p.uri);
      published.push({ rel, uri: p.uri, diagnostics: p.diagnostics });
      current.set(rel, p.diagnostics);
    });
    ({ child, conn } = s);
    statuses = s.statuses;
    log = s.log;
  });

  after(async () => {
    if (child.exitCode === null) child.kill();
    conn.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('publishes exactly the problem files after the first scan, with code, severity and the source', async () => {
    const want = expected.files.filter((f) => !SOUND.has(f.expect));
    const got = problems();
    assert.deepEqual([...got.keys()].sort(), want.map((f) => f.path).sort(), log.stderr);
    for (const f of want) {
      const [d, ...more] = got.get(f.path)!;
      assert.equal(more.length, 0, f.path);
      assert.equal(d.code, f.expect, f.path);
      assert.equal(d.severity, severity(f.expect), f.path);
      assert.equal(d.source, 'lora-sync');
      assert.deepEqual(d.range, { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } });
      assert.equal(typeof d.message, 'string');
      assert.ok((d.message as string).length > 10, f.path);
      if (f.expect === 'STALE') {
        assert.equal(relOf(d.relatedInformation![0].location.uri), f.source, f.path);
        assert.match(d.message as string, /^stale: \d+ of \d+ tensors differ/);
      }
    }
    // URIs name the files as they are on disk (the DTYPE_MISMATCH copy sits in NFD-spelled folders).
    for (const x of published) assert.ok(existsSync(fileURLToPath(x.uri)), x.uri);
    const status = await conn.sendRequest(ServerStatusRequest);
    assert.equal(status.state, 'ready');
    assert.equal(status.folders, 1);
    assert.equal(status.problems, want.length);
  });

  it('logs the digest algorithm and which hashers run (native here, where npm installed them)', () => {
    const line = log.messages.find((m) => m.startsWith('LoRA Sync server:'));
    assert.match(line ?? '', /digests xxh64-4MiB-leaves\+sha256-128, hashing (native|portable)$/);
    if (process.platform === 'linux' && process.arch === 'x64') assert.match(line!, /hashing native$/);
  });

  it("logs the first scan: files, how many were read, and each phase's wall time", () => {
    const line = log.messages.find((m) => m.includes(': first scan: '));
    const n = expected.files.length;
    assert.ok(line?.startsWith(`${dir}: first scan: ${n} files, ${n} read, 0 from the cache; `), line);
    const phases = /list (\d+), keys (\d+), read (\d+), statuses (\d+), cache (\d+) \(wall ms\)$/.exec(line!);
    assert.ok(phases, line);
    assert.ok(Number(phases[3]) >= 1, `reading ${n} checkpoints takes at least a millisecond: ${line}`);
  });

  it('loraSync/copyMap gives every file with its expected status', async () => {
    const map = await conn.sendRequest(CopyMapRequest, {});
    assert.equal(map.folders.length, 1);
    const byPath = new Map(map.folders[0].files.map((f) => [f.path, f.status]));
    assert.deepEqual([...byPath.keys()].sort(), expected.files.map((f) => f.path).sort());
    for (const f of expected.files) assert.equal(byPath.get(f.path), f.expect, f.path);
    const a = map.folders[0].loras.find((l) => l.id === 'lora_a')!;
    assert.equal(a.source, '⭐_AKTIF_EN_IYILER/LoRA_A.pt');
    assert.equal(a.copies.length, 4);
  });

  it('rejects a bad request with an error and keeps running', async () => {
    await assert.rejects(conn.sendRequest(SyncRequest, {}), (e: ResponseError<void>) =>
      /lora .* or all/.test(e.message),
    );
    await assert.rejects(conn.sendRequest(SyncRequest, { lora: 'no_such_lora' }), (e: ResponseError<void>) =>
      /no LoRA/.test(e.message),
    );
    assert.equal((await conn.sendRequest(ServerStatusRequest)).state, 'ready');
  });

  it('loraSync/sync all writes the STALE and drifted copies and clears their diagnostics; DIVERGED stays', async () => {
    const writable = expected.files
      .filter((f) => (f.expect === 'STALE' || f.expect === 'METADATA_DRIFT') && !f.sync_blocked)
      .map((f) => f.path);
    assert.ok(writable.length >= 4);
    const before = new Map(await Promise.all(writable.map(async (p) => [p, await sha(p)] as const)));
    const mark = published.length;
    const res = await conn.sendRequest(SyncRequest, { all: true, reason: 'TEST' });
    assert.equal(res.synced, writable.length);
    assert.equal(res.failed, 0);
    const outcomes = res.folders[0].loras.flatMap((l) => l.copies);
    assert.ok(outcomes.every((c) => !('entry' in c)));
    for (const p of writable) {
      assert.notEqual(await sha(p), before.get(p), `${p} was not rewritten`);
      assert.equal(outcomes.find((c) => c.path === p)?.outcome, 'synced', p);
    }
    // Each written copy gets an empty publish after the request was sent.
    await until('the cleared diagnostics', 5000, () =>
      writable.every((p) => published.slice(mark).some((x) => x.rel === p && x.diagnostics.length === 0)),
    );
    const left = problems();
    for (const p of writable) assert.ok(!left.has(p), p);
    for (const f of expected.files.filter((x) => x.expect === 'DIVERGED' || x.sync_blocked))
      assert.equal(left.get(f.path)?.[0].code, f.expect, f.path);
  });

  it('a copy changed on disk gets a diagnostic through the watcher', async () => {
    const rel = 'İstanbul_Başakşehir/🎯_DRAW_EXPERTS/LoRA_H_a1b2c3.pt';
    assert.ok(!problems().has(rel));
    await trainerStep(join(dir, rel));
    const d = await until('a diagnostic for the changed copy', 10000, () => problems().get(rel));
    assert.equal(d[0].code, 'DIVERGED');
    assert.equal(d[0].severity, DiagnosticSeverity.Error);
  });

  it('a settings change rebuilds the folder in place; invalid settings show as an error state', async () => {
    const hall = expected.files
      .filter((f) => f.path.startsWith('🏛️_NEWTON_HALL/') && problems().has(f.path))
      .map((f) => f.path);
    assert.ok(hall.length >= 2);
    const exclude = ['**/.git/**', '**/node_modules/**', '**/.lora-sync/**', '**/🏛️_NEWTON_HALL/**'];
    await conn.sendNotification('workspace/didChangeConfiguration', {
      settings: { loraSync: { debounceMs: 50, settleMs: 200, exclude, editorOnlyKey: true } },
    });
    await until('the excluded folder cleared', 10000, () => hall.every((p) => !problems().has(p)));
    assert.ok(problems().has('İstanbul_Başakşehir/🎯_DRAW_EXPERTS/LoRA_A_0d0e0f.pt'));
    await conn.sendNotification('workspace/didChangeConfiguration', { settings: { loraSync: { debounceMs: -1 } } });
    const bad = await until('the error state', 10000, () => statuses.find((x) => x.state === 'error'));
    assert.match(bad.message!, /debounceMs/);
    assert.equal(problems().size, 0); // a folder that cannot be used shows no stale diagnostics
    await conn.sendNotification('workspace/didChangeConfiguration', {
      settings: { loraSync: { debounceMs: 50, settleMs: 200 } },
    });
    await until('ready again', 10000, () => statuses.at(-1)?.state === 'ready' && problems().has(hall[0]));
  });

  it('shutdown and exit end the process with code 0', async () => {
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    await conn.sendRequest('shutdown');
    await conn.sendNotification('exit');
    assert.equal(await exited, 0);
  });
});

describe('language server: a client that shows work-done progress', function () {
  this.timeout(60000);
  it('reports the first scan as progress, begin to end, and logs its phases once', async () => {
    const dir = await copyFixtureWorkspace('lora-lsp-progress-');
    const { child, conn, log } = await startServer(
      dir,
      { watch: false },
      () => undefined,
      {},
      {
        window: { workDoneProgress: true },
      },
    );
    try {
      const kinds = log.progress.map((p) => p.kind);
      assert.equal(kinds[0], 'begin', kinds.join());
      assert.equal(kinds.at(-1), 'end', kinds.join());
      const n = expected.files.length;
      assert.ok(
        log.progress.some((p) => p.message === `${n} / ${n} files`),
        JSON.stringify(log.progress),
      );
      // The server's own scan was the first (the live index's then reads nothing): one log line, not two.
      const lines = log.messages.filter((m) => m.includes(': first scan: '));
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.match(
        lines[0],
        new RegExp(`: first scan: ${n} files, ${n} read, 0 from the cache; list \\d+, keys \\d+, read \\d+`),
      );
      assert.equal((await conn.sendRequest(ServerStatusRequest)).state, 'ready');
    } finally {
      child.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/**
 * A generated seed workspace of 1,500 files (a cold scan long enough to act in), and the server
 * `body` starts on it: the server is killed and the folder removed whatever happens.
 */
async function onManyFiles(prefix: string, body: (dir: string, started: (c: ChildProcess) => void) => Promise<void>) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  let child: ChildProcess | undefined;
  try {
    await generateSeedWorkspace(dir, { loras: 300, copies: 1_200 });
    await body(dir, (c) => {
      child = c;
    });
  } finally {
    child?.kill();
    await rm(dir, { recursive: true, force: true });
  }
}

describe('language server: a cold scan of many files', function () {
  this.timeout(120000);
  it('answers a request sent while it reads, before its read ends', () =>
    onManyFiles('lora-lsp-busy-', async (dir, running) => {
      // The request goes out at the first report of the read; its answer must come back before the
      // report of the last file (the server reads small files with synchronous calls: without a turn
      // of its event loop between batches, it would not even see the request until the read was done).
      let asked = false;
      let answeredAt = -1;
      let progressAtAnswer = '';
      const reports: string[] = [];
      const started = await startServer(
        dir,
        { watch: false },
        () => undefined,
        {},
        { window: { workDoneProgress: true } },
        (value, conn) => {
          if (value.kind !== 'report' || !value.message) return;
          reports.push(value.message);
          const m = /^(\d+) \/ (\d+) files$/.exec(value.message);
          if (asked || !m || Number(m[1]) === 0 || Number(m[1]) >= Number(m[2]) / 4) return;
          asked = true;
          void conn.sendRequest(ServerStatusRequest).then(() => {
            answeredAt = reports.length;
            progressAtAnswer = reports.at(-1) ?? '';
          });
        },
      );
      running(started.child);
      assert.ok(asked, `a report early in the read: ${reports.slice(0, 5).join(', ')}`);
      const last = reports.length;
      const total = /\/ (\d+) files/.exec(reports.at(-1)!)![1];
      assert.equal(reports.at(-1), `${total} / ${total} files`, 'the last report is the last file');
      assert.ok(
        answeredAt > 0 && answeredAt < last,
        `answered after report ${answeredAt} of ${last} (${progressAtAnswer})`,
      );
      assert.equal(started.log.progress.at(-1)?.kind, 'end');
    }));
});

describe('language server: a folder removed while its first scan runs', function () {
  this.timeout(120000);
  it('publishes nothing for it afterwards and watches nothing', () =>
    onManyFiles('lora-lsp-removed-', async (dir, running) => {
      const uri = pathToFileURL(dir).toString();
      // The last diagnostics published for each file (an empty list clears a file's problems).
      const last = new Map<string, number>();
      let removed = false;
      const started = await startServer(
        dir,
        { watch: true },
        (p) => last.set(p.uri, p.diagnostics.length),
        {},
        { window: { workDoneProgress: true }, workspace: { workspaceFolders: true } },
        (value, conn) => {
          if (removed || value.kind !== 'report') return;
          removed = true; // the read has begun: the folder goes away under it
          void conn.sendNotification('workspace/didChangeWorkspaceFolders', {
            event: { added: [], removed: [{ uri, name: 'ws' }] },
          });
        },
      );
      running(started.child);
      assert.ok(removed, 'the folder was removed during the scan');
      // A file of the removed folder goes bad afterwards: a watcher left running would report it.
      const victim = (await readdir(dir, { recursive: true })).find((r) => r.endsWith('.pt') && r.includes('/'))!;
      await truncate(join(dir, victim), 100);
      await sleep(4000); // past the watcher's settle time (1 s) and its batching
      const shown = [...last].filter(([u, n]) => u.startsWith(uri) && n > 0).map(([u]) => u);
      assert.deepEqual(shown, [], 'no file of the removed folder keeps a problem in the Problems panel');
      const status = await started.conn.sendRequest(ServerStatusRequest);
      assert.equal(status.loras, 0, JSON.stringify(status));
    }));
});

// The untrusted (readOnly) server: test/faults/untrusted.faults.test.ts.

describe('language server: a history that cannot be written', function () {
  this.timeout(60000);
  it('still syncs the copies, and says in the sync result that the history was not written', async () => {
    const dir = await copyFixtureWorkspace('lora-lsp-hist-');
    // The fault seam (server/src/io/faults.ts) fails the history append with ENOSPC, as a full disk would.
    const { child, conn } = await startServer(dir, { watch: false }, () => undefined, {
      LORA_SYNC_FAULTS: 'ENOSPC@history:write',
    });
    try {
      const r = await conn.sendRequest(SyncRequest, { all: true });
      assert.ok(r.synced >= 3, 'the copies were written');
      assert.equal(r.failed, 0);
      assert.match(r.folders[0].historyError ?? '', /history could not be written \(no space left on the device\)/);
    } finally {
      child.kill();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
