/** Small file helpers shared by the engine suites. */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { cp, lstat, mkdtemp, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';

/** Every file under `dir` (hidden ones too), as '/'-separated paths relative to it (as stored: NFC or NFD). */
export async function walk(dir: string, base = dir): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, d.name);
    if (d.isDirectory()) out.push(...(await walk(p, base)));
    else out.push(relative(base, p).split(sep).join('/'));
  }
  return out;
}

export const sha256File = async (p: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(p))
    .digest('hex');

const REPO = join(__dirname, '..', '..');

/** Rebuilds dist/ when dist/cli.js is missing or older than any source it bundles; returns its path. */
export function ensureBuilt(): string {
  const cli = join(REPO, 'dist', 'cli.js');
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce((m, d) => {
      const p = join(dir, d.name);
      return Math.max(m, d.isDirectory() ? newest(p) : statSync(p).mtimeMs);
    }, 0);
  if (
    !existsSync(cli) ||
    statSync(cli).mtimeMs <
      Math.max(newest(join(REPO, 'server', 'src')), statSync(join(REPO, 'scripts', 'build.mjs')).mtimeMs)
  ) {
    execFileSync('npm', ['run', 'build'], { cwd: REPO, stdio: 'ignore' });
  }
  return cli;
}

/** A fresh copy of the torch-written fixture workspace (test/fixtures/workspace) in a temp folder. */
export async function copyFixtureWorkspace(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  // preserveTimestamps: files at rest, as in a real workspace (a file written milliseconds before a scan
  // is racily clean and read again by the next one: see Workspace.racy).
  // The state folder is left out: a CLI run on the fixture folder itself leaves one (git ignores it).
  const from = join(REPO, 'test', 'fixtures', 'workspace');
  await cp(from, dir, {
    recursive: true,
    preserveTimestamps: true,
    filter: (src) => !relative(from, src).split(sep).includes('.lora-sync'),
  });
  return dir;
}

/**
 * The source folders of the layouts workspace: the kohya run's output folder and the PEFT adapter's
 * folder (globs on folder paths), so its epochs and its Trainer checkpoint are versions of one source.
 */
export const LAYOUTS_SOURCE_FOLDERS = ['train/kohya', 'peft/pixel_lora'];

/**
 * A fresh copy of the layout fixtures (test/fixtures/layouts: kohya, A1111, ComfyUI, PEFT, diffusers)
 * in a temp folder, with a lora-sync.json naming LAYOUTS_SOURCE_FOLDERS and every checkpoint extension.
 */
export async function copyLayoutsWorkspace(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  await cp(join(REPO, 'test', 'fixtures', 'layouts'), dir, { recursive: true, preserveTimestamps: true });
  const config = {
    sourceFolders: LAYOUTS_SOURCE_FOLDERS,
    include: ['**/*.safetensors', '**/*.pt', '**/*.pth', '**/*.bin', '**/*.ckpt'],
  };
  await writeFile(join(dir, 'lora-sync.json'), `${JSON.stringify(config, null, 2)}\n`);
  return dir;
}

/**
 * Overwrites `abs` in place with `bytes` of the same size and sets its mtime back to the nanosecond:
 * (size, mtime, inode) stay what they were, as when a file is rewritten twice within one timestamp
 * tick on a file system with coarse timestamps, or by someone who means to hide it.
 */
export async function overwriteKeepingKey(abs: string, bytes: Buffer): Promise<void> {
  const st = await lstat(abs, { bigint: true });
  if (BigInt(bytes.length) !== st.size)
    throw new Error(`overwriteKeepingKey: ${bytes.length} bytes for a file of ${st.size}`);
  const fh = await open(abs, 'r+');
  try {
    await fh.write(bytes, 0, bytes.length, 0);
  } finally {
    await fh.close();
  }
  const sec = st.mtimeNs / 1_000_000_000n;
  const ns = (st.mtimeNs % 1_000_000_000n).toString().padStart(9, '0');
  execFileSync('touch', ['-m', '-d', `@${sec}.${ns}`, abs]);
  const after = await lstat(abs, { bigint: true });
  if (after.mtimeNs !== st.mtimeNs || after.ino !== st.ino || after.size !== st.size)
    throw new Error('overwriteKeepingKey: the key changed');
}
