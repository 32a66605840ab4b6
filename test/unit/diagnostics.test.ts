/**
 * One file's diagnostics (lsp/diagnostics.ts is pure), from the reports the engine gives for the
 * torch-written fixture workspace (test/fixtures/workspace): which files get one, its severity,
 * code, message, the source as related information, and the data the client reads.
 */
import { strict as assert } from 'node:assert';
import { rm } from 'node:fs/promises';
import { DiagnosticSeverity } from 'vscode-languageserver';
import type { Workspace } from '../../server/src/engine/workspace';
import { DIAGNOSTIC_SOURCE, diagnosticsFor, severityOf } from '../../server/src/lsp/diagnostics';
import type { ReportStatus } from '../../server/src/protocol/statusTable';
import { expectedFiles as expected, scannedFixtureWorkspace } from '../support/fixtureWorkspace';

/** The README's severities: undefined = no diagnostic. */
const SEVERITY: Record<string, DiagnosticSeverity | undefined> = {
  SOURCE: undefined,
  IN_SYNC: undefined,
  UNRECOGNIZED: undefined,
  CORRUPT: DiagnosticSeverity.Error,
  UNSAFE: DiagnosticSeverity.Error,
  DIVERGED: DiagnosticSeverity.Error,
  PARAM_COUNT_MISMATCH: DiagnosticSeverity.Error,
  SHAPE_MISMATCH: DiagnosticSeverity.Error,
  DTYPE_MISMATCH: DiagnosticSeverity.Error,
  DUPLICATE_SOURCE: DiagnosticSeverity.Error,
  STALE: DiagnosticSeverity.Warning,
  ORPHAN: DiagnosticSeverity.Warning,
  METADATA_DRIFT: DiagnosticSeverity.Information,
};

describe('diagnostics of one file (diagnosticsFor on the fixture workspace)', function () {
  this.timeout(60_000);
  let dir: string;
  let ws: Workspace;
  const uriOf = (rel: string) => `file:///ws/${rel}`;
  const diagnosticsOf = (rel: string) => {
    const e = ws.entry(rel);
    assert.ok(e, `${rel} is not indexed`);
    return diagnosticsFor(ws.fileReport(e), ws.status(rel)?.source, uriOf);
  };

  before(async () => {
    ({ dir, ws } = await scannedFixtureWorkspace('lora-diagnostics-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('gives a problem file one diagnostic with its severity and status as the code; sound files none', () => {
    for (const f of expected) {
      const d = diagnosticsOf(f.path);
      const want = SEVERITY[f.expect];
      assert.equal(severityOf(f.expect as ReportStatus), want, f.expect);
      if (want === undefined) {
        assert.deepEqual(d, [], f.path);
        continue;
      }
      assert.equal(d.length, 1, f.path);
      assert.equal(d[0].severity, want, f.path);
      assert.equal(d[0].code, f.expect, f.path);
      assert.equal(d[0].source, DIAGNOSTIC_SOURCE);
      assert.deepEqual(d[0].range, { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } });
    }
  });

  it('names the source a copy was compared with as related information, and in its data', () => {
    const stale = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';
    const [d] = diagnosticsOf(stale);
    assert.deepEqual(d.relatedInformation, [
      {
        location: { uri: uriOf('⭐_AKTIF_EN_IYILER/LoRA_A.pt'), range: d.range },
        message: 'source: ⭐_AKTIF_EN_IYILER/LoRA_A.pt',
      },
    ]);
    const report = ws.fileReport(ws.entry(stale)!);
    assert.deepEqual(d.data, {
      path: stale,
      lora_id: 'lora_a',
      role: 'copy',
      source: '⭐_AKTIF_EN_IYILER/LoRA_A.pt',
      issues: report.issues,
    });
    // No source to name: an orphan, and a duplicated source.
    const orphan = expected.find((f) => f.expect === 'ORPHAN')!.path;
    assert.equal(diagnosticsOf(orphan)[0].relatedInformation, undefined);
    assert.equal((diagnosticsOf(orphan)[0].data as { source?: string }).source, undefined);
    const dup = expected.find((f) => f.expect === 'DUPLICATE_SOURCE')!.path;
    assert.equal(diagnosticsOf(dup)[0].relatedInformation, undefined);
  });

  it('lists the differing tensors after the message, unless the message names them itself', () => {
    const stale = diagnosticsOf('Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt')[0];
    assert.equal(
      stale.message,
      `${ws.fileReport(ws.entry('Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt')!).message} [layers.0.lora_A, layers.0.lora_B, layers.1.lora_A, layers.1.lora_B]`,
    );
    assert.match(stale.message, /^stale: 4 of 4 tensors differ from ⭐_AKTIF_EN_IYILER\/LoRA_A\.pt/);
    for (const status of ['METADATA_DRIFT', 'PARAM_COUNT_MISMATCH', 'SHAPE_MISMATCH', 'DTYPE_MISMATCH']) {
      const rel = expected.find((f) => f.expect === status)!.path;
      assert.equal(diagnosticsOf(rel)[0].message, ws.fileReport(ws.entry(rel)!).message, status);
    }
  });
});
