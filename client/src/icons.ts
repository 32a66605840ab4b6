/** How each file status looks: tree icon, Explorer badge, words. One table so all views agree. */
import { ThemeColor, ThemeIcon } from 'vscode';
import type { FileReport } from '../../server/src/engine/workspace';

export type FileStatus = FileReport['status'];

interface Look {
  icon: string;
  color?: string;
  /** Explorer badge letter; none for sound files. */
  badge?: string;
  /** Short words for descriptions and counts. */
  label: string;
}

const RED = 'list.errorForeground';
const YELLOW = 'list.warningForeground';

const LOOKS: Record<FileStatus, Look> = {
  SOURCE: { icon: 'star-full', label: 'source' },
  IN_SYNC: { icon: 'pass', color: 'testing.iconPassed', label: 'in sync' },
  STALE: { icon: 'sync', color: YELLOW, badge: 'S', label: 'stale' },
  DIVERGED: { icon: 'git-compare', color: RED, badge: 'D', label: 'diverged' },
  METADATA_DRIFT: { icon: 'info', color: 'list.highlightForeground', badge: 'M', label: 'metadata drift' },
  PARAM_COUNT_MISMATCH: { icon: 'error', color: RED, badge: '!', label: 'tensor count mismatch' },
  SHAPE_MISMATCH: { icon: 'error', color: RED, badge: '!', label: 'shape mismatch' },
  DTYPE_MISMATCH: { icon: 'error', color: RED, badge: '!', label: 'dtype mismatch' },
  CORRUPT: { icon: 'file-binary', color: RED, badge: 'C', label: 'corrupt' },
  UNSAFE: { icon: 'shield', color: RED, badge: 'U', label: 'unsafe' },
  ORPHAN: { icon: 'question', color: YELLOW, badge: 'O', label: 'orphan' },
  DUPLICATE_SOURCE: { icon: 'copy', color: RED, badge: '!', label: 'duplicate source' },
  UNRECOGNIZED: { icon: 'file', label: 'not a LoRA' },
};

export function statusIcon(status: FileStatus): ThemeIcon {
  const look = LOOKS[status];
  return new ThemeIcon(look.icon, look.color ? new ThemeColor(look.color) : undefined);
}

export function statusLabel(status: FileStatus): string {
  return LOOKS[status].label;
}

/** Badge letter and colour for the Explorer, or undefined for files that need nothing. */
export function statusBadge(status: FileStatus): { letter: string; color: ThemeColor } | undefined {
  const look = LOOKS[status];
  return look.badge && look.color ? { letter: look.badge, color: new ThemeColor(look.color) } : undefined;
}

/** Files that need attention (the server counts the same way). */
export function isProblem(status: FileStatus): boolean {
  return status !== 'SOURCE' && status !== 'IN_SYNC' && status !== 'UNRECOGNIZED';
}

/** Status-bar buckets: the structure mismatches count as diverged (both need a person). */
export function bucketOf(status: FileStatus): string | undefined {
  switch (status) {
    case 'PARAM_COUNT_MISMATCH':
    case 'SHAPE_MISMATCH':
    case 'DTYPE_MISMATCH':
      return 'diverged';
    case 'DUPLICATE_SOURCE':
      return 'duplicate';
    case 'METADATA_DRIFT':
      return 'drift';
    default:
      return isProblem(status) ? LOOKS[status].label : undefined;
  }
}
