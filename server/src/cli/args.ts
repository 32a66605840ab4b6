/**
 * Parses one command's arguments from its entry in the option table (options.ts). Strict, as
 * before: an unknown option or a stray argument is a usage error, now with the nearest valid name
 * suggested ("did you mean --dry-run?"), as git and npm do.
 */
import { CliUsageError } from './engineCommands';
import { type CommandSpec, optionsOf } from './options';

export interface Parsed {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

export function parseCommand(spec: CommandSpec, args: string[]): Parsed {
  const opts = optionsOf(spec);
  const values: Parsed['values'] = {};
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      positionals.push(a);
      continue;
    }
    const long = a.startsWith('--');
    const eq = long ? a.indexOf('=') : -1;
    const name = long ? a.slice(2, eq < 0 ? undefined : eq) : a.slice(1);
    const o = long ? opts.find((x) => x.name === name) : opts.find((x) => x.short === name);
    if (!o) {
      // A long name (or one typed with a single dash, `-dry-run`) gets the nearest long name; an
      // unknown one-letter option gets only the pointer to the help that follows every usage error.
      const near =
        name.length > 1
          ? nearest(
              name.replace(/^-/, ''),
              opts.map((x) => x.name),
            )
          : undefined;
      const hint = near ? `; did you mean --${near}?` : '';
      throw new CliUsageError(`${spec.name}: unknown option '${a.split('=')[0]}'${hint}`);
    }
    if (o.type === 'boolean') {
      if (eq >= 0) throw new CliUsageError(`${spec.name}: --${o.name} takes no value`);
      values[o.name] = true;
      continue;
    }
    let v: string | undefined;
    if (eq >= 0) v = a.slice(eq + 1);
    else if (i + 1 < args.length) v = args[++i];
    if (v === undefined) throw new CliUsageError(`${spec.name}: --${o.name} needs a value (${o.arg ?? 'VALUE'})`);
    if (o.choices && !o.choices.includes(v)) {
      const near = nearest(v, o.choices);
      throw new CliUsageError(
        `${spec.name}: --${o.name} takes ${o.choices.join(', ')}, not '${v}'${near ? `; did you mean ${near}?` : ''}`,
      );
    }
    values[o.name] = v;
  }
  const p = spec.positionals;
  if (!values.help) {
    const max = p?.max ?? 0;
    if (positionals.length > max) throw new CliUsageError(`${spec.name}: unexpected argument '${positionals[max]}'`);
    if (p && positionals.length < p.min) throw new CliUsageError(`${spec.name} needs ${p.name}`);
  }
  return { values, positionals };
}

/**
 * The output format: `--json` is the short form of `--format json`; the two must not disagree.
 */
export function formatOf(v: Parsed['values'], cmd: string): 'text' | 'json' | 'sarif' {
  const f = v.format as 'text' | 'json' | 'sarif' | undefined;
  if (v.json && f && f !== 'json') throw new CliUsageError(`${cmd}: --json and --format ${f} disagree`);
  return v.json ? 'json' : (f ?? 'text');
}

/** The candidate closest to `word` (a prefix of it, or within a third of its length in edits), if any. */
export function nearest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  const prefixed = candidates.filter((c) => c.startsWith(w) && w.length >= 2);
  if (prefixed.length === 1) return prefixed[0];
  let best: string | undefined;
  let bestD = Math.max(2, Math.ceil(w.length / 3)) + 1;
  for (const c of candidates) {
    const d = distance(w, c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best;
}

/** Damerau–Levenshtein (optimal string alignment): a swapped pair of letters is one edit, as typos are. */
function distance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.length][b.length];
}
