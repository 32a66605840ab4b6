/**
 * Engine statuses → LSP diagnostics. Pure: the server decides which files to publish; this module
 * only says what one file's diagnostics are (none for a sound or unrecognized file). Severities
 * come from the status table (protocol/statusTable.ts).
 */
import { type Diagnostic, type DiagnosticRelatedInformation, DiagnosticSeverity } from 'vscode-languageserver';
import type { FileReport } from '../engine/workspace';
import type { DiagnosticData } from '../protocol/messages';
import { factsOf, type ReportStatus, type Severity } from '../protocol/statusTable';
import { issueToWire } from './wire';

export const DIAGNOSTIC_SOURCE = 'lora-sync';

const LSP_SEVERITY: Record<Severity, DiagnosticSeverity> = {
  error: DiagnosticSeverity.Error,
  warning: DiagnosticSeverity.Warning,
  information: DiagnosticSeverity.Information,
};

/** The severity a status is shown with; undefined = not a problem (no diagnostic). */
export function severityOf(status: ReportStatus): DiagnosticSeverity | undefined {
  const s = factsOf(status).severity;
  return s && LSP_SEVERITY[s];
}

/** At most this many per-tensor issues are listed in the message (all of them are in `data`). */
const LISTED_ISSUES = 5;

/**
 * The diagnostics of one file. `source` is the file it was compared with (copies), `uriOf` turns a
 * workspace-relative path into the URI of the file on disk.
 */
export function diagnosticsFor(
  r: FileReport,
  source: string | undefined,
  uriOf: (rel: string) => string,
): Diagnostic[] {
  const hashIssues = r.issues.filter((i) => i.type === 'EMBEDDED_HASH_MISMATCH');
  const out = statusDiagnostic(r, source, uriOf);
  // Embedded hashes that disagree with the file: a warning of their own, whatever the status (a sound
  // file included: UIs that trust the hash will show the wrong one).
  if (hashIssues.length)
    out.push({
      range: { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } },
      severity: DiagnosticSeverity.Warning,
      code: 'EMBEDDED_HASH_MISMATCH',
      source: DIAGNOSTIC_SOURCE,
      message: `embedded hash mismatch: ${hashIssues.map((i) => i.detail).join('; ')}`,
      data: {
        path: r.path,
        lora_id: r.lora_id,
        role: r.role,
        ...(source ? { source } : {}),
        issues: hashIssues.map(issueToWire),
      } satisfies DiagnosticData,
    });
  return out;
}

function statusDiagnostic(r: FileReport, source: string | undefined, uriOf: (rel: string) => string): Diagnostic[] {
  const severity = severityOf(r.status);
  if (severity === undefined) return [];
  const related: DiagnosticRelatedInformation[] = [];
  const at0 = { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } };
  if (source && source !== r.path)
    related.push({ location: { uri: uriOf(source), range: at0 }, message: `source: ${source}` });
  // Per-tensor (or per-key) issues: the message says what differs, so list the first few by name.
  const named = r.issues.filter((i) => i.param !== undefined && i.type !== 'EMBEDDED_HASH_MISMATCH');
  let message = r.message;
  if (named.length && !factsOf(r.status).messageNamesParams) {
    const listed = named
      .slice(0, LISTED_ISSUES)
      .map((i) => i.param)
      .join(', ');
    message += ` [${listed}${named.length > LISTED_ISSUES ? `, +${named.length - LISTED_ISSUES} more` : ''}]`;
  }
  const data: DiagnosticData = {
    path: r.path,
    lora_id: r.lora_id,
    role: r.role,
    ...(source ? { source } : {}),
    issues: r.issues.map(issueToWire),
  };
  return [
    {
      range: at0,
      severity,
      code: r.status,
      source: DIAGNOSTIC_SOURCE,
      message,
      ...(related.length ? { relatedInformation: related } : {}),
      data,
    },
  ];
}
