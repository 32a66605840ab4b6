/**
 * Issue 17, "unsafe means unsafe": a corpus of hostile pickles (make_unsafe_pickles.py) placed in a
 * workspace the ways torch.load reads a pickle — plain pickles named .pt/.bin (the legacy path
 * unpickles them before it checks the magic number), a legacy file whose magic number, system-info or
 * storage-key pickle carries the payload, payloads that run and then break the stream, a second
 * pickle after STOP, namespace tampering, STACK_GLOBAL through the memo and through computed names,
 * INST/OBJ/NEWOBJ, each protocol 0-5, as plain files and as a zip's data.pkl.
 *
 * For every file: LoRA Sync (engine, status, diagnostics, inspector, `lora-sync inspect`, sync and
 * forced sync) reports it UNSAFE naming what it expects and runs nothing (each payload would create a
 * marker); then real torch.load (or, for the second pickle, a loader reading data.pkl to its end)
 * runs each payload in a scratch folder: every fixture is proven live.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DiagnosticSeverity } from 'vscode-languageserver';
import { Workspace } from '../../server/src/engine/workspace';
import { inspectWorkspaceFile } from '../../server/src/lsp/views/inspectModel';
import { diagnosticsFor } from '../../server/src/lsp/diagnostics';
import { addFigure, setFigure } from './figures';
import { HAS_TORCH, PY, privateCli, runCli, snapshot, tempDir } from './support';
import { pyScript } from '../support/python';

const SEC = 'unsafe pickles (issue 17)';

interface Fixture {
  id: string;
  class: string;
  file: string;
  expect: string;
  prove: 'torch' | 'torch-alone' | 'read-to-end';
  note: string;
}
interface Made {
  fixtures: Fixture[];
  benign: { benign: string; trailing_zip: string; trailing_legacy: string };
}

/** Runs torch.load on each file (or reads data.pkl's pickles to the end); errors after a payload are expected. */
const PROVE = String.raw`
import io, pickle, sys, zipfile
import torch
mode, files = sys.argv[1], sys.argv[2:]
class ReadToEnd(pickle.Unpickler):
    # A loader that reads every pickle of data.pkl; torch's own names become inert stand-ins.
    def find_class(self, module, name):
        if module.startswith("torch") or module == "collections":
            return lambda *a, **k: None
        return super().find_class(module, name)
    def persistent_load(self, pid):
        return None
for f in files:
    try:
        if mode == "read-to-end":
            z = zipfile.ZipFile(f)
            data = io.BytesIO(z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0]))
            while data.tell() < len(data.getvalue()):
                ReadToEnd(data).load()
        else:
            torch.load(f)
    except Exception as e:
        print("%s: %s: %s" % (f, type(e).__name__, str(e)[:100]), file=sys.stderr)
`;

(HAS_TORCH ? describe : describe.skip)(
  'unsafe means unsafe: every pickle torch.load would run, scanned to its end (skipped without torch)',
  function () {
    this.timeout(300_000);
    let tmp: string;
    let ws: string;
    let proof: string;
    let marker: string;
    let made: Made;
    let cli: string;
    const nfc = (p: string) => p.normalize('NFC');
    const ran = () => readdirSync(proof).filter((n) => n.startsWith('ran.'));

    before(async () => {
      tmp = await tempDir('lora-unsafe-');
      cli = await privateCli(tmp);
      ws = join(tmp, 'ws');
      proof = join(tmp, 'proof');
      await mkdir(proof);
      marker = join(proof, 'ran');
      made = JSON.parse(
        execFileSync(PY, [pyScript('make_unsafe_pickles.py'), ws, marker], { encoding: 'utf8' }),
      ) as Made;
      for (const f of made.fixtures) f.file = nfc(f.file);
      made.benign = {
        benign: nfc(made.benign.benign),
        trailing_zip: nfc(made.benign.trailing_zip),
        trailing_legacy: nfc(made.benign.trailing_legacy),
      };
      // .bin files are checkpoints too here (torch.load reads them the same way).
      await writeFile(join(ws, 'lora-sync.json'), JSON.stringify({ include: ['**/*.pt', '**/*.bin'] }));
      const classes = new Map<string, number>();
      for (const f of made.fixtures) classes.set(f.class, (classes.get(f.class) ?? 0) + 1);
      console.log(`      ${made.fixtures.length} fixtures: ${[...classes].map(([c, n]) => `${c} ${n}`).join(', ')}`);
    });
    after(() => rm(tmp, { recursive: true, force: true }));

    it('each is UNSAFE naming what it would run, in status, diagnostics, the inspector and `lora-sync inspect`; nothing runs', async () => {
      const st = await runCli(cli, ['status', '--json', '--all', '--root', ws]);
      assert.equal(st.code, 1, st.err);
      type F = { path: string; status: string; message: string; issues: Array<{ type: string; detail: string }> };
      const files = new Map((JSON.parse(st.out) as { files: F[] }).files.map((f) => [f.path, f]));
      const w = await Workspace.open(ws);
      await w.scan();
      const uri = (rel: string) => `file://${join(ws, rel)}`;
      for (const fx of made.fixtures) {
        const f = files.get(fx.file);
        assert.equal(f?.status, 'UNSAFE', `${fx.id}: ${f?.status} ${f?.message}`);
        assert.ok(
          f.issues.some((i) => i.detail.includes(fx.expect) || i.type === 'NAMESPACE_TAMPERING'),
          `${fx.id}: ${fx.expect} not named in ${JSON.stringify(f.issues)}`,
        );
        assert.ok(f.message.includes(fx.expect), `${fx.id}: ${f.message}`);
        if (fx.class === 'namespace tampering')
          assert.ok(
            f.issues.some((i) => i.type === 'NAMESPACE_TAMPERING'),
            `${fx.id}: no NAMESPACE_TAMPERING`,
          );
        // The engine in process (what the language server runs): the same status; an error diagnostic.
        const report = w.fileReport(w.entry(fx.file)!);
        assert.equal(report.status, 'UNSAFE', fx.id);
        const diags = diagnosticsFor(report, undefined, uri);
        assert.equal(diags[0]?.severity, DiagnosticSeverity.Error, fx.id);
        assert.match(String(diags[0].message), /unsafe/, fx.id);
        // The inspector's model: unsafe, with the name.
        const model = await inspectWorkspaceFile(w, join(ws, fx.file));
        assert.equal(model.status, 'UNSAFE', fx.id);
        assert.equal(model.safety.safe, false, fx.id);
        assert.ok(
          model.safety.unsafe.some((u) => u.global.includes(fx.expect)),
          `${fx.id}: ${JSON.stringify(model.safety)}`,
        );
        // The command line.
        const ins = await runCli(cli, ['inspect', join(ws, fx.file), '--json']);
        assert.equal(ins.code, 1, `${fx.id}: ${ins.err}`);
        const r = JSON.parse(ins.out) as {
          sound: boolean;
          safety?: { safe: boolean; unsafe: Array<{ global: string }> };
        };
        assert.equal(r.sound, false);
        assert.ok(
          r.safety?.unsafe.some((u) => u.global.includes(fx.expect)),
          `${fx.id}: ${ins.out.slice(0, 300)}`,
        );
        const text = await runCli(cli, ['inspect', join(ws, fx.file)]);
        assert.match(text.out, /UNSAFE/, fx.id);
        addFigure(SEC, 'fixtures reported UNSAFE', 1);
      }
      // Not payloads: a benign plain pickle is what it is; bytes after the last pickle are TRAILING_DATA.
      assert.equal(files.get(made.benign.benign)?.status, 'UNRECOGNIZED');
      for (const rel of [made.benign.trailing_zip, made.benign.trailing_legacy]) {
        assert.equal(files.get(rel)?.status, 'CORRUPT', rel);
        assert.equal(files.get(rel)?.issues[0].type, 'TRAILING_DATA', rel);
      }
      assert.deepEqual(ran(), [], 'a payload ran');
    });

    it('a sync, forced or not, refuses every one of them with the unsafe reason and runs nothing', async () => {
      const before = await snapshot(ws, (r) => r.startsWith('.lora-sync/'));
      for (const args of [
        ['sync', '--all', '--json'],
        ['sync', '--all', '--force', '--json'],
      ]) {
        const r = await runCli(cli, [...args, '--root', ws]);
        type Out = { result: { loras: Array<{ copies: Array<{ path: string; outcome: string; reason: string }> }> } };
        const copies = (JSON.parse(r.out) as Out).result.loras.flatMap((l) => l.copies);
        for (const fx of made.fixtures) {
          const c = copies.find((x) => x.path === fx.file);
          assert.equal(c?.outcome, 'refused', `${fx.id}: ${JSON.stringify(c)}`);
          assert.match(c.reason, /code|unsafe/, fx.id);
        }
      }
      const after = await snapshot(ws, (r) => r.startsWith('.lora-sync/'));
      for (const fx of made.fixtures) assert.equal(after.get(fx.file), before.get(fx.file), `${fx.id} was written`);
      assert.deepEqual(ran(), [], 'a payload ran');
    });

    it('every fixture is live: torch.load (a read-to-end loader for the second pickle) runs each payload', () => {
      assert.deepEqual(ran(), [], 'a marker exists before the proof');
      const abs = (f: Fixture) => join(ws, f.file);
      const prove = (mode: string, fs: Fixture[]) => {
        if (!fs.length) return;
        const r = spawnSync(PY, ['-c', PROVE, mode, ...fs.map(abs)], { cwd: proof, encoding: 'utf8' });
        assert.equal(r.status, 0, r.stderr);
      };
      prove(
        'torch',
        made.fixtures.filter((f) => f.prove === 'torch'),
      );
      // A tampering payload rewrites torch's own module: each in a process of its own.
      for (const f of made.fixtures.filter((x) => x.prove === 'torch-alone')) prove('torch', [f]);
      prove(
        'read-to-end',
        made.fixtures.filter((f) => f.prove === 'read-to-end'),
      );
      const dead = made.fixtures.filter((f) => !existsSync(`${marker}.${f.id}`)).map((f) => f.id);
      assert.deepEqual(dead, [], 'payloads that did not run');
      const byTorch = made.fixtures.filter((f) => f.prove !== 'read-to-end').length;
      setFigure(SEC, 'proven live', `${made.fixtures.length} of ${made.fixtures.length} (${byTorch} by torch.load)`);
      setFigure(SEC, 'code executed by LoRA Sync', 'never');
    });
  },
);
