/** How each file status looks in VS Code: tree icon, Explorer badge, words; from the shared status table. */
import { ThemeColor, ThemeIcon } from 'vscode';
import { factsOf, isProblem, type ReportStatus } from '../../server/src/protocol/statusTable';

export type FileStatus = ReportStatus;
export { isProblem };

export function statusIcon(status: FileStatus): ThemeIcon {
  const facts = factsOf(status);
  return new ThemeIcon(facts.icon, facts.color ? new ThemeColor(facts.color) : undefined);
}

export function statusLabel(status: FileStatus): string {
  return factsOf(status).label;
}

/** Badge letter and colour for the Explorer, or undefined for files that need nothing. */
export function statusBadge(status: FileStatus): { letter: string; color: ThemeColor } | undefined {
  const facts = factsOf(status);
  return facts.badge && facts.color ? { letter: facts.badge, color: new ThemeColor(facts.color) } : undefined;
}

/** Status-bar bucket of a problem file; undefined for files that need nothing. */
export function bucketOf(status: FileStatus): string | undefined {
  return factsOf(status).bucket;
}
