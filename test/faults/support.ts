/** Helpers shared by the fault suites: the built CLI as a child process, snapshots of a tree, torch and mounts. */
import { spawn, spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, open, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { ensureBuilt, overwriteKeepingKey, sha256File, walk as listTree } from '../support/files';
import { TEMP_MARK, tempFileOwner } from '../../server/src/io/atomicWrite';
import { prng } from '../../server/src/demo/loraTree';
import { openCheckpoint } from '../../server/src/formats/checkpoint';
import { fingerprintCheckpoint } from '../../server/src/formats/fingerprint';
import * as N from '../../server/src/formats/pickle/nodes';
import { getKey, type PyDict, type PyNode, type PyObject } from '../../server/src/formats/pickle/nodes';
import { storageSourcesOf, torchPrefixFor, writeTorchCheckpoint } from '../../server/src/formats/torch/ptWriter';
import { typedForm, type Typed } from '../../server/src/formats/pyValue';
import { DEFAULT_CONFIG } from '../../server/src/engine/config';
import { hasTorch } from '../support/python';

export { PY, pyScript } from '../support/python';

export const REPO = join(__dirname, '..', '..');
export const HAS_TORCH = hasTorch();
/** The sync clock the suites fix (io/faults.ts `clock@`), so two runs write byte-identical copies. */
export const CLOCK = 'clock@2026-01-02T03:04:05.678Z';

export const isTemp = (rel: string) => rel.includes(TEMP_MARK);
/** The pid in a temporary file's name (`.<name>.lora-sync-tmp-<pid>-<rand>`). */
export const tempPid = (rel: string) => tempFileOwner(rel)?.pid ?? NaN;

export { prng, overwriteKeepingKey };

/** A private copy of dist/cli.js in `dir`, so a build running beside the tests cannot swap it mid-run. */
export async function privateCli(dir: string): Promise<string> {
  const cli = join(dir, 'cli.js');
  await copyFile(ensureBuilt(), cli);
  return cli;
}

export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
  err: string;
  pid: number;
  ms: number;
}

/** Runs the CLI; `env` is added to ours (LORA_SYNC_FAULTS rules go there); `killAfterMs` SIGKILLs it then. */
export function runCli(
  cli: string,
  args: string[],
  opts: { env?: Record<string, string>; killAfterMs?: number; cwd?: string } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const env = { ...process.env, ...opts.env };
    if (!opts.env?.LORA_SYNC_FAULTS) delete env.LORA_SYNC_FAULTS;
    const p = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env, cwd: opts.cwd });
    let out = '';
    let err = '';
    // Decoded as a stream: a chunk may end inside a multi-byte character (an emoji folder name).
    p.stdout.setEncoding('utf8');
    p.stderr.setEncoding('utf8');
    p.stdout.on('data', (b) => (out += b));
    p.stderr.on('data', (b) => (err += b));
    const timer = opts.killAfterMs !== undefined ? setTimeout(() => p.kill('SIGKILL'), opts.killAfterMs) : undefined;
    p.on('error', reject);
    p.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, out, err, pid: p.pid!, ms: performance.now() - t0 });
    });
  });
}

/** Every file under `dir` (links not followed, hidden files too), '/'-separated relative paths. */
export { listTree };

/** sha256 of every regular file under `dir`, by relative path. */
export async function snapshot(
  dir: string,
  skip: (rel: string) => boolean = () => false,
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const rel of await listTree(dir)) if (!skip(rel)) out.set(rel, await sha256File(join(dir, rel)));
  return out;
}

export const tempDir = (prefix: string) => mkdtemp(join(tmpdir(), prefix));

/** Whether this process may mount a tmpfs (root in a machine or a privileged container), or why not. */
export function canMount(probeDir: string): true | string {
  if (process.getuid?.() !== 0) return 'not running as root';
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probeDir], { encoding: 'utf8' });
  if (r.status !== 0) return `mount is not permitted here: ${(r.stderr || r.error?.message || '').trim()}`;
  spawnSync('umount', [probeDir]);
  return true;
}

export function mountTmpfs(dir: string, size: string): void {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount tmpfs on ${dir}: ${r.stderr}`);
}

export function umount(dir: string): void {
  spawnSync('umount', ['-l', dir]);
}

/** What our reader sees in a torch checkpoint: tensors (digests), the copy's own keys (typed), CRCs, safety, our sync record. */
export async function checkpointFacts(abs: string) {
  const c = await openCheckpoint(abs);
  try {
    const fp = await fingerprintCheckpoint(c);
    const meta = getKey(c.root!, 'metadata');
    const info = meta && getKey(meta, 'sync_info');
    const record = info && getKey(info, 'lora_sync');
    const recorded = record && getKey(record, 'tensors');
    return {
      tensors: fp.tensors.map(({ path, dtype, shape, digest }) => ({ path, dtype, shape, digest })),
      copyKeys: DEFAULT_CONFIG.copyKeys.map((k) => {
        const v = meta && getKey(meta, k);
        return v ? typedForm(v) : (['missing'] as Typed);
      }),
      crcFailures: fp.crcFailures.length,
      crcChecked: fp.crcChecked,
      unsafe: c.unsafe.length,
      engineRecord: !!record,
      recordedTensors: recorded && recorded.kind === 'str' ? recorded.value : undefined,
    };
  } finally {
    await c.close();
  }
}

/**
 * Rewrites the torch checkpoint `src` to `out` with our writer after `edit` changed its tree
 * (tensor bytes copied from `src`).
 */
export async function rewriteCheckpoint(src: string, out: string, edit: (root: PyNode) => void): Promise<void> {
  const c = await openCheckpoint(src);
  try {
    edit(c.root!);
    const fh = await open(out, 'w');
    try {
      await writeTorchCheckpoint(fh, { prefix: torchPrefixFor(out), root: c.root!, storages: storageSourcesOf(c) });
    } finally {
      await fh.close();
    }
  } finally {
    await c.close();
  }
}

/**
 * A variant of `src` (written in `scratchDir`) with `edit` applied to its metadata and exactly `src`'s size: metadata keys are
 * dropped from `spare` and a `_pad` string grown until the size matches (zip records are 64-byte
 * aligned, so the size moves in steps). For the "same size, same mtime, same inode" races.
 */
export async function sameSizeVariant(
  src: string,
  scratchDir: string,
  edit: (meta: PyDict) => void,
  spare: string[] = [],
): Promise<Buffer> {
  const want = (await stat(src)).size;
  await mkdir(scratchDir, { recursive: true });
  const scratch = join(scratchDir, basename(src)); // the archive folder inside is named after the file
  for (let drop = 0; drop <= spare.length; drop++) {
    for (let pad = 0; pad < 200; pad++) {
      await rewriteCheckpoint(src, scratch, (root) => {
        const meta = getKey(root, 'metadata') as PyDict;
        meta.entries = meta.entries.filter(([k]) => !(k.kind === 'str' && spare.slice(0, drop).includes(k.value)));
        edit(meta);
        if (pad) meta.entries.push([N.str('_pad'), N.str('x'.repeat(pad))]);
      });
      const b = await readFile(scratch);
      if (b.length === want) return b;
      if (b.length > want + 64) break; // drop more
    }
  }
  throw new Error(`no variant of ${src} with its size`);
}

/** The pickle node of `callable(*args)`, as a hostile pickle's REDUCE decodes. */
export function reduceOf(module: string, name: string, args: PyNode[]): PyObject {
  return { kind: 'object', how: 'reduce', callable: N.global(module, name), args: N.tuple(args) };
}

/** Central-directory entries of a small zip written by torch or our writer (classic end record valid, no comment). */
export function centralEntries(buf: Buffer): Array<{ at: number; name: string; localOffset: number }> {
  const eocd = buf.length - 22;
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  const out: Array<{ at: number; name: string; localOffset: number }> = [];
  for (let i = 0; i < count; i++) {
    const n = buf.readUInt16LE(p + 28);
    out.push({ at: p, name: buf.subarray(p + 46, p + 46 + n).toString('utf8'), localOffset: buf.readUInt32LE(p + 42) });
    p += 46 + n + buf.readUInt16LE(p + 30) + buf.readUInt16LE(p + 32);
  }
  return out;
}
