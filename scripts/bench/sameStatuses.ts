/**
 * `npm run bench:same -- BASE_DIST [WORKSPACE...]`: proves a change to the read path left every
 * status as it was. For each workspace (default: the torch-written fixture folders: the workspace,
 * the layouts workspace, every single-file fixture with its unsafe, corrupt and odd files, and the
 * layouts), two copies are made; on each, one build runs, in order: a cold `status --json --all`, `verify --json`,
 * `sync --all --dry-run --json` and a warm `status --json --all` (index cache present). The outputs
 * and exit codes of the two builds must be byte-identical (the root path aside). BASE_DIST is a
 * `dist/` folder built from the commit to compare with, e.g.
 *   git worktree add /tmp/base <commit> && (cd /tmp/base && npm ci && npm run build)
 *   npm run build && npm run bench:same -- /tmp/base/dist /tmp/ws10x
 * Exits 1 and names the first difference of each command that differs.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';

const ROOT = resolve(__dirname, '..', '..');
const COMMANDS = [
  ['status', '--json', '--all'],
  ['verify', '--json'],
  ['sync', '--all', '--dry-run', '--json'],
  ['status', '--json', '--all'],
];

function run(dist: string, ws: string): string[] {
  rmSync(join(ws, '.lora-sync'), { recursive: true, force: true });
  return COMMANDS.map((args) => {
    const r = spawnSync(process.execPath, [join(dist, 'cli.js'), ...args, '--root', ws], {
      encoding: 'utf8',
      maxBuffer: 1 << 30,
    });
    return `exit ${r.status}\n${r.stdout.split(ws).join('<root>')}`;
  });
}

function firstDifference(a: string, b: string): string {
  const la = a.split('\n');
  const lb = b.split('\n');
  for (let i = 0; i < Math.max(la.length, lb.length); i++)
    if (la[i] !== lb[i]) return `line ${i + 1}:\n  base: ${la[i]}\n  this: ${lb[i]}`;
  return 'same';
}

function main(): void {
  const [base, ...given] = process.argv.slice(2);
  if (!base) {
    console.error('usage: npm run bench:same -- BASE_DIST [WORKSPACE...]');
    process.exit(2);
  }
  const spaces = given.length
    ? given
    : ['workspace', 'layouts_workspace', 'torch', 'layouts'].map((f) => join(ROOT, 'test', 'fixtures', f));
  let differ = 0;
  for (const ws of spaces) {
    const tmp = mkdtempSync(join(tmpdir(), 'lora-same-'));
    try {
      const a = join(tmp, 'base', basename(ws));
      const b = join(tmp, 'this', basename(ws));
      cpSync(ws, a, { recursive: true });
      cpSync(ws, b, { recursive: true });
      const outA = run(resolve(base), a);
      const outB = run(join(ROOT, 'dist'), b);
      COMMANDS.forEach((c, i) => {
        const same = outA[i] === outB[i];
        if (!same) differ++;
        console.log(
          `${same ? 'same  ' : 'DIFFER'} ${ws}: ${c.join(' ')}${i === 3 ? ' (warm)' : ''} (${outB[i].length} bytes)`,
        );
        if (!same) console.log(firstDifference(outA[i], outB[i]));
      });
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  process.exit(differ ? 1 : 0);
}

main();
