/**
 * Every fact about a file status, in one table: how serious it is (the Problems panel), whether a
 * sync writes it, how each front end shows it (VS Code codicon and theme colour, Explorer badge,
 * status-bar bucket, CLI glyph) and the words a user reads. Plain data, no `vscode` import: the
 * engine, the language server, the CLI and the client all read it. Adding a status fails to compile
 * until each of its facts is given here.
 */

/** The engine's statuses, in the order `stats.by_status` lists them (a stable JSON order). */
export const STATUSES = [
  'SOURCE',
  'IN_SYNC',
  'STALE',
  'DIVERGED',
  'METADATA_DRIFT',
  'PARAM_COUNT_MISMATCH',
  'SHAPE_MISMATCH',
  'DTYPE_MISMATCH',
  'CORRUPT',
  'UNSAFE',
  'ORPHAN',
  'DUPLICATE_SOURCE',
  'VERSION',
] as const;
export type Status = (typeof STATUSES)[number];

/** A file's status in reports: an engine status, or `UNRECOGNIZED` for a file that is no LoRA checkpoint. */
export type ReportStatus = Status | 'UNRECOGNIZED';

/** Diagnostic severity, as the LSP names them (none: not a problem, no diagnostic). */
export type Severity = 'error' | 'warning' | 'information';

/** The ANSI colours the CLI uses (cli/colour.ts maps them to escape codes). */
export type CliColor = 'red' | 'yellow' | 'green' | 'cyan' | 'blue' | 'magenta' | 'dim';

/** What a sync does with a copy in this status: writes it, writes it only when forced, or never. */
export type SyncRule = 'write' | 'force' | 'never';

export interface StatusFacts {
  /** Problems-panel severity; undefined: nothing to fix, no diagnostic. */
  severity?: Severity;
  /** Nothing to do (a source, or a copy equal to it). */
  sound: boolean;
  sync: SyncRule;
  /** The message already names every differing tensor or key, so a diagnostic does not list them again. */
  messageNamesParams: boolean;
  /** VS Code codicon id of the tree item. */
  icon: string;
  /** VS Code theme colour id of the icon and Explorer badge; undefined: the theme's default. */
  color?: string;
  /** Explorer badge letter; undefined for files that need nothing. */
  badge?: string;
  /** Status-bar bucket (problem files only): structure mismatches count as diverged, both need a person. */
  bucket?: string;
  /** Glyph in `lora-sync status`. */
  cliIcon: string;
  /**
   * Terminal colour of the status in `lora-sync` output; undefined: from the severity (error red,
   * warning yellow, information cyan, none: the terminal's default). See `cliColorOf`.
   */
  cliColor?: CliColor;
  /** Short words for descriptions, counts and tooltips. */
  label: string;
  /** The inspector's heading: the status in a sentence. */
  explanation: string;
}

const RED = 'list.errorForeground';
const YELLOW = 'list.warningForeground';

export const STATUS_FACTS = {
  SOURCE: {
    sound: true,
    sync: 'never',
    messageNamesParams: false,
    icon: 'star-full',
    cliIcon: '●',
    cliColor: 'blue',
    label: 'source',
    explanation: 'Source: its copies follow this file',
  },
  IN_SYNC: {
    sound: true,
    sync: 'never',
    messageNamesParams: false,
    icon: 'pass',
    color: 'testing.iconPassed',
    cliIcon: '✓',
    cliColor: 'green',
    label: 'in sync',
    explanation: 'In sync with its source',
  },
  STALE: {
    severity: 'warning',
    sound: false,
    sync: 'write',
    messageNamesParams: false,
    icon: 'sync',
    color: YELLOW,
    badge: 'S',
    bucket: 'stale',
    cliIcon: '↻',
    label: 'stale',
    explanation: 'Stale: the source moved on, a sync brings this copy up to date',
  },
  DIVERGED: {
    severity: 'error',
    sound: false,
    sync: 'force',
    messageNamesParams: false,
    icon: 'git-compare',
    color: RED,
    badge: 'D',
    bucket: 'diverged',
    cliIcon: '⚠',
    label: 'diverged',
    explanation: 'Diverged: this copy changed on its own, a sync would overwrite that work',
  },
  METADATA_DRIFT: {
    severity: 'information',
    sound: false,
    sync: 'write',
    messageNamesParams: true,
    icon: 'info',
    color: 'list.highlightForeground',
    badge: 'M',
    bucket: 'drift',
    cliIcon: '≈',
    label: 'metadata drift',
    explanation: 'Metadata drift: the tensors equal the source, general metadata differs',
  },
  PARAM_COUNT_MISMATCH: {
    severity: 'error',
    sound: false,
    sync: 'force',
    messageNamesParams: true,
    icon: 'error',
    color: RED,
    badge: '!',
    bucket: 'diverged',
    cliIcon: '✗',
    label: 'tensor count mismatch',
    explanation: 'Parameter count differs from the source',
  },
  SHAPE_MISMATCH: {
    severity: 'error',
    sound: false,
    sync: 'force',
    messageNamesParams: true,
    icon: 'error',
    color: RED,
    badge: '!',
    bucket: 'diverged',
    cliIcon: '✗',
    label: 'shape mismatch',
    explanation: 'A tensor shape differs from the source',
  },
  DTYPE_MISMATCH: {
    severity: 'error',
    sound: false,
    sync: 'force',
    messageNamesParams: true,
    icon: 'error',
    color: RED,
    badge: '!',
    bucket: 'diverged',
    cliIcon: '✗',
    label: 'dtype mismatch',
    explanation: 'A tensor dtype differs from the source',
  },
  CORRUPT: {
    severity: 'error',
    sound: false,
    sync: 'never',
    messageNamesParams: false,
    icon: 'file-binary',
    color: RED,
    badge: 'C',
    bucket: 'corrupt',
    cliIcon: '✗',
    label: 'corrupt',
    explanation: 'Corrupt: the file cannot be read',
  },
  UNSAFE: {
    severity: 'error',
    sound: false,
    sync: 'never',
    messageNamesParams: false,
    icon: 'shield',
    color: RED,
    badge: 'U',
    bucket: 'unsafe',
    cliIcon: '☠',
    cliColor: 'magenta',
    label: 'unsafe',
    explanation: 'Unsafe: torch.load would run code from this file',
  },
  ORPHAN: {
    severity: 'warning',
    sound: false,
    sync: 'never',
    messageNamesParams: false,
    icon: 'question',
    color: YELLOW,
    badge: 'O',
    bucket: 'orphan',
    cliIcon: '?',
    label: 'orphan',
    explanation: 'Orphan: no source for this LoRA',
  },
  DUPLICATE_SOURCE: {
    severity: 'error',
    sound: false,
    sync: 'never',
    messageNamesParams: false,
    icon: 'copy',
    color: RED,
    badge: '!',
    bucket: 'duplicate',
    cliIcon: '⚠',
    label: 'duplicate source',
    explanation: 'Duplicate source: another source claims this LoRA',
  },
  VERSION: {
    sound: true,
    sync: 'never',
    messageNamesParams: false,
    icon: 'history',
    cliIcon: '◦',
    cliColor: 'dim',
    label: 'version',
    explanation: 'An earlier version of the source (an older epoch, step or checkpoint): kept, never written',
  },
  UNRECOGNIZED: {
    sound: false,
    sync: 'never',
    messageNamesParams: false,
    icon: 'file',
    cliIcon: '·',
    cliColor: 'dim',
    label: 'not a LoRA',
    explanation: 'Not a LoRA checkpoint: LoRA Sync leaves it alone',
  },
} as const satisfies Record<ReportStatus, StatusFacts>;

/** The facts of one status (typed as the interface, so optional facts read as possibly undefined). */
export function factsOf(status: ReportStatus): StatusFacts {
  return STATUS_FACTS[status];
}

/** Needs attention: has a diagnostic (the server counts problems this way, the views too). */
export function isProblem(status: ReportStatus): boolean {
  return factsOf(status).severity !== undefined;
}

/** The SARIF level of a status's severity (SARIF has no "information": it says "note"). */
export function sarifLevel(status: ReportStatus): 'error' | 'warning' | 'note' | 'none' {
  const s = factsOf(status).severity;
  return s === 'error' ? 'error' : s === 'warning' ? 'warning' : s === 'information' ? 'note' : 'none';
}

/** The terminal colour of a status: its own, else the colour of its severity. */
export function cliColorOf(status: ReportStatus): CliColor | undefined {
  const f = factsOf(status);
  if (f.cliColor) return f.cliColor;
  return f.severity === 'error'
    ? 'red'
    : f.severity === 'warning'
      ? 'yellow'
      : f.severity === 'information'
        ? 'cyan'
        : undefined;
}
