/**
 * Every command of `lora-sync` and its options, declared once: parsing (args.ts), help (help.ts) and
 * shell completion (completion.ts) all read this table, so they cannot disagree.
 */

export interface OptionSpec {
  /** Long name, without the dashes. */
  name: string;
  /** One-letter alias, without the dash. */
  short?: string;
  /** A flag, or an option that takes a value (`--root DIR`, `--root=DIR`). */
  type: 'boolean' | 'string';
  /** The value's placeholder in help. */
  arg?: string;
  /** The allowed values, checked when parsing and offered by completion. */
  choices?: readonly string[];
  /** The default as help shows it. */
  default?: string;
  /** What a shell should complete the value with. */
  complete?: 'dir' | 'file';
  help: string;
}

export interface CommandSpec {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** What follows `lora-sync NAME` in the usage line. */
  usage: string;
  /** A few sentences for `--help`. */
  description: string;
  /** Positional arguments: how many, and what completes them. */
  positionals?: { name: string; min: number; max: number; complete?: 'file' | 'command' | 'shell' };
  options: OptionSpec[];
  exits: Array<[code: number, meaning: string]>;
  example: string;
}

const root: OptionSpec = {
  name: 'root',
  type: 'string',
  arg: 'DIR',
  default: 'the current folder',
  complete: 'dir',
  help: 'the workspace folder',
};
const format = (choices: readonly string[]): OptionSpec => ({
  name: 'format',
  type: 'string',
  arg: 'FORMAT',
  choices,
  default: 'text',
  help: `output format: ${choices.join(', ')}`,
});
const json: OptionSpec = { name: 'json', type: 'boolean', help: 'short for --format json' };
const quiet: OptionSpec = {
  name: 'quiet',
  short: 'q',
  type: 'boolean',
  help: 'no progress line on the terminal',
};
const timings: OptionSpec = {
  name: 'timings',
  type: 'boolean',
  help: 'at the end (also after an error), one line on stderr: where the time went (start-up, each scan phase, the command)',
};
const lora: OptionSpec = { name: 'lora', type: 'string', arg: 'ID', help: 'one LoRA, by id or unique name' };
export const HELP_OPTION: OptionSpec = { name: 'help', short: 'h', type: 'boolean', help: 'show this help' };

const USAGE_EXIT: [number, string] = [
  2,
  'usage or fatal error (unknown option, no such folder, invalid lora-sync.json)',
];

export const COMMANDS: CommandSpec[] = [
  {
    name: 'status',
    summary: "every checkpoint's status (problems only, or --all)",
    usage: '[--root DIR] [--format text|json|sarif] [--all] [--timings]',
    description:
      'Scans the workspace (with the cache in .lora-sync/) and prints a summary, the count per status and each file that needs attention with one sentence. --format sarif writes SARIF 2.1.0 for code scanning in CI.',
    options: [
      root,
      format(['text', 'json', 'sarif']),
      json,
      { name: 'all', type: 'boolean', help: 'list every file, not only problems' },
      quiet,
      timings,
    ],
    exits: [[0, 'every file is a source, in sync or not a LoRA'], [1, 'a file needs attention'], USAGE_EXIT],
    example: 'lora-sync status --root ~/trainer --format sarif > lora-sync.sarif',
  },
  {
    name: 'verify',
    summary: 'consistency of one LoRA or all (verify_sync_integrity)',
    usage: '[--root DIR] [--format text|json|sarif] [--lora ID] [--timings]',
    description:
      'Scans, then checks every copy of one LoRA or of all against its source, and appends a VERIFY event per LoRA to the history.',
    options: [root, format(['text', 'json', 'sarif']), json, lora, quiet, timings],
    exits: [[0, 'consistent'], [1, 'inconsistencies found'], USAGE_EXIT],
    example: 'lora-sync verify --lora LoRA_A',
  },
  {
    name: 'sync',
    summary: 'bring copies up to date with their source',
    usage:
      '(--lora ID | --all) [--root DIR] [--force] [--dry-run] [--reason R] [--match N] [--format text|json] [--timings]',
    description:
      "Plans, then writes the source's tensors and general metadata into each stale copy, keeping the copy's own keys. Diverged and mismatched copies are refused unless --force (a backup is kept). Ctrl-C stops between copies; a second Ctrl-C quits at once.",
    options: [
      lora,
      { name: 'all', type: 'boolean', help: 'every LoRA' },
      root,
      { name: 'force', type: 'boolean', help: 'also overwrite diverged and mismatched copies, after a backup' },
      { name: 'dry-run', short: 'n', type: 'boolean', help: 'print the plan, write nothing' },
      {
        name: 'reason',
        type: 'string',
        arg: 'R',
        default: 'FULL_SYNC with --all, MANUAL with --lora',
        help: 'the sync_reason written into each copy and the history',
      },
      {
        name: 'match',
        type: 'string',
        arg: 'N',
        default: "the source's own",
        help: "the trainer's match index, written as last_sync_match",
      },
      format(['text', 'json']),
      json,
      quiet,
      timings,
    ],
    exits: [
      [0, 'done (refused copies are listed, and do not fail the sync)'],
      [1, 'a copy failed, the sync was cancelled, or the history could not be written'],
      USAGE_EXIT,
    ],
    example: 'lora-sync sync --all --dry-run',
  },
  {
    name: 'history',
    summary: 'the newest sync and verify events',
    usage: '[--root DIR] [--lora ID] [--limit N] [--format text|json]',
    description: 'Prints the newest events of .lora-sync/history.jsonl, optionally of one LoRA (by id). Does not scan.',
    options: [
      root,
      { name: 'lora', type: 'string', arg: 'ID', help: 'events of this LoRA id only' },
      { name: 'limit', type: 'string', arg: 'N', default: '50', help: 'how many events' },
      format(['text', 'json']),
      json,
    ],
    exits: [[0, 'done'], USAGE_EXIT],
    example: 'lora-sync history --limit 10',
  },
  {
    name: 'stats',
    summary: "the seed's statistics and a count per status",
    usage: '[--root DIR] [--format text|json] [--timings]',
    description:
      'Scans, then prints total_loras_tracked, total_copies_tracked, total_syncs_performed, average_copies_per_lora and a count per status.',
    options: [root, format(['text', 'json']), json, quiet, timings],
    exits: [[0, 'done'], USAGE_EXIT],
    example: 'lora-sync stats --json',
  },
  {
    name: 'watch',
    summary: 'keep watching, print status changes, auto-sync per lora-sync.json',
    usage: '[--root DIR] [--poll] [--format text|json]',
    description:
      'Runs the live loop without VS Code: scans, watches the folder, reconciles every reconcileSeconds and auto-syncs as lora-sync.json says. Ctrl-C or SIGTERM stops it.',
    options: [
      root,
      { name: 'poll', type: 'boolean', help: 'poll instead of native file events (network drives)' },
      format(['text', 'json']),
      json,
    ],
    exits: [[0, 'stopped by Ctrl-C or SIGTERM'], USAGE_EXIT],
    example: 'lora-sync watch --root /data/loras',
  },
  {
    name: 'inspect',
    summary: 'one checkpoint: format, CRCs, safety, tensors, metadata',
    usage: 'FILE [--format text|json]',
    description: 'Reads one .pt or .safetensors file without executing anything and reports what it holds.',
    positionals: { name: 'FILE', min: 1, max: 1, complete: 'file' },
    options: [format(['text', 'json']), json],
    exits: [
      [0, 'sound'],
      [1, 'corrupt or unsafe'],
      [2, 'no such file, or a usage error'],
    ],
    example: 'lora-sync inspect ⭐_AKTIF_EN_IYILER/LoRA_A.pt --json',
  },
  {
    name: 'init',
    summary: 'propose a lora-sync.json for this folder, and write it',
    usage: '[--root DIR] [--yes] [--force]',
    description:
      'Looks at the folder (source folders, layouts, counts), shows the lora-sync.json it proposes, and writes it on --yes or when you confirm at the prompt. An existing lora-sync.json is never replaced without --force.',
    options: [
      root,
      { name: 'yes', short: 'y', type: 'boolean', help: 'write without asking' },
      { name: 'force', type: 'boolean', help: 'replace an existing lora-sync.json' },
    ],
    exits: [[0, 'written, or shown and not written'], [1, 'lora-sync.json exists (use --force)'], USAGE_EXIT],
    example: 'lora-sync init --yes',
  },
  {
    name: 'completion',
    summary: 'print a shell completion script (bash, zsh, fish)',
    usage: 'bash|zsh|fish',
    description:
      'Prints the completion script for a shell. bash: add `source <(lora-sync completion bash)` to ~/.bashrc. zsh: `lora-sync completion zsh > ~/.zfunc/_lora-sync` with ~/.zfunc in fpath before compinit. fish: `lora-sync completion fish > ~/.config/fish/completions/lora-sync.fish`.',
    positionals: { name: 'SHELL', min: 1, max: 1, complete: 'shell' },
    options: [],
    exits: [[0, 'printed'], USAGE_EXIT],
    example: 'source <(lora-sync completion bash)',
  },
  {
    name: 'demo',
    summary: 'generate a seed-like workspace, then status, sync, verify',
    usage: '[--dir DIR]',
    description:
      'Replaces DIR with a generated workspace of 120 LoRAs and 487 copies, then runs status, a full sync and verify.',
    options: [
      {
        name: 'dir',
        type: 'string',
        arg: 'DIR',
        default: 'demo-workspace',
        complete: 'dir',
        help: 'where to generate it',
      },
    ],
    exits: [[0, 'done'], USAGE_EXIT],
    example: 'lora-sync demo --dir /tmp/demo',
  },
  {
    name: 'help',
    summary: 'help on a command',
    usage: '[COMMAND]',
    description: 'Prints the usage, options, exit codes and an example of a command, or the list of commands.',
    positionals: { name: 'COMMAND', min: 0, max: 1, complete: 'command' },
    options: [],
    exits: [
      [0, 'printed'],
      [2, 'no such command'],
    ],
    example: 'lora-sync help sync',
  },
];

export const SHELLS = ['bash', 'zsh', 'fish'] as const;

export function commandSpec(name: string): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name);
}

/** A command's options, --help included (every command takes it). */
export function optionsOf(c: CommandSpec): OptionSpec[] {
  return [...c.options, HELP_OPTION];
}
