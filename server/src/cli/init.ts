/**
 * `lora-sync init`: looks at a folder, proposes a `lora-sync.json`, shows it, and writes it only
 * on --yes or a confirmed prompt (on a terminal). Never replaces an existing file without --force;
 * the write is atomic (temporary file, flush, rename), so a half-written config never exists.
 *
 * What it proposes: the source folders it found. Folders whose name contains AKTIF_EN_IYILER (the
 * seed's layout) first; else folders that look like a training output (several versions of one
 * LoRA: kohya's `-000004` / `-step00000100` saves, `checkpoint-N` folders), or folders holding the
 * bare names that other folders hold as `<name>_<6 hex>` copies. Layouts are recognized from each
 * file's header by the layouts/ modules (the same ones the engine uses).
 */
import { createInterface } from 'node:readline/promises';
import { access, mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import fg from 'fast-glob';
import { CONFIG_FILE, DEFAULT_CONFIG } from '../engine/config';
import { atomicWrite } from '../io/atomicWrite';
import { withCheckpoint } from '../formats/checkpoint';
import { describeCheckpoint } from '../layouts/describe';
import { recognize } from '../layouts/recognize';
import { baseName, dirName, fileStem, nameFromFileName } from '../layouts/fileName';
import { isGlobValue } from '../engine/sourceFolders';
import { checkpointStepOf, versionFromStem } from '../layouts/versions';
import { CliUsageError } from './engineCommands';
import { type Painter, painter } from './colour';

/** Headers read for the layout counts: enough to say what a folder holds, bounded for huge trees. */
const MAX_RECOGNIZED = 400;
const SEED_MARK = 'AKTIF_EN_IYILER';

export interface Proposal {
  config: { sourceFolders: string[]; include: string[]; exclude: string[] };
  /** The folders found, relative to the root, with why each counts as a source folder. */
  sourceFolders: Array<{ folder: string; why: string }>;
  files: number;
  folders: number;
  /** Files per recognized layout (of the first MAX_RECOGNIZED), 'unrecognized' included. */
  layouts: Record<string, number>;
  recognized: number;
}

export async function propose(root: string): Promise<Proposal> {
  const files = (
    await fg(DEFAULT_CONFIG.include, {
      cwd: root,
      ignore: DEFAULT_CONFIG.exclude,
      dot: false,
      onlyFiles: true,
      followSymbolicLinks: false,
    })
  )
    .map((f) => f.normalize('NFC'))
    .sort();
  const byFolder = new Map<string, string[]>();
  for (const f of files) {
    const d = dirName(f);
    byFolder.set(d, [...(byFolder.get(d) ?? []), f]);
  }
  const found: Proposal['sourceFolders'] = [];
  const seedFolders = [...byFolder.keys()].filter((d) => d.split('/').some((seg) => seg.includes(SEED_MARK)));
  for (const d of seedFolders) found.push({ folder: d, why: `its name contains ${SEED_MARK}` });
  if (!found.length) found.push(...trainingOutputs(byFolder), ...namesCopiedElsewhere(byFolder, files));
  const layouts: Record<string, number> = {};
  const sample = files.slice(0, MAX_RECOGNIZED);
  for (const f of sample) {
    const siblings = (byFolder.get(dirName(f)) ?? []).map(baseName);
    const layout = await withCheckpoint(join(root, f), async (c) =>
      recognize(describeCheckpoint(c, f, { siblings }), found.some((s) => dirName(f) === s.folder) ? 'source' : 'copy'),
    ).then(
      (r) => r.layout,
      () => 'unreadable',
    );
    layouts[layout] = (layouts[layout] ?? 0) + 1;
  }
  // A source folder is matched by a part of its name: the seed's mark, else each folder's own name
  // when no other folder's name contains it, else its path (a glob on the path names that folder only).
  const names = seedFolders.length
    ? [SEED_MARK]
    : [...new Set(found.map((s) => sourceFolderValue(s.folder, byFolder)))];
  return {
    config: {
      sourceFolders: names.length ? names : DEFAULT_CONFIG.sourceFolders,
      include: DEFAULT_CONFIG.include,
      exclude: DEFAULT_CONFIG.exclude,
    },
    sourceFolders: found,
    files: files.length,
    folders: byFolder.size,
    layouts,
    recognized: sample.length,
  };
}

/**
 * The `sourceFolders` value for a folder: its name, unless another folder on some file's path has a
 * name containing it (`deploy/prod/pixel_lora` for the source `peft/pixel_lora`), which the name would
 * make a source too; then its path (`peft/pixel_lora`, a top-level one as `hf_out/`).
 */
export function sourceFolderValue(folder: string, byFolder: Map<string, string[]>): string {
  const name = baseName(folder);
  const others = new Set<string>();
  for (const d of byFolder.keys()) {
    let path = '';
    for (const seg of d.split('/')) {
      path = path ? `${path}/${seg}` : seg;
      if (path !== folder && seg.includes(name)) others.add(path);
    }
  }
  if (!others.size && !isGlobValue(name)) return name;
  return folder.includes('/') ? folder : `${folder}/`;
}

/** Folders holding several versions of one LoRA: what a trainer writes as it goes. */
function trainingOutputs(byFolder: Map<string, string[]>): Proposal['sourceFolders'] {
  const out: Proposal['sourceFolders'] = [];
  const seen = new Set<string>();
  for (const [d, fs] of byFolder) {
    if (d === '') continue;
    const step = checkpointStepOf(baseName(d));
    if (step !== undefined) {
      // checkpoint-500/, checkpoint-1000/ …: their parent is the run's output folder.
      const parent = dirName(d);
      if (parent && !seen.has(parent)) {
        seen.add(parent);
        out.push({ folder: parent, why: 'it holds checkpoint-N folders of a training run' });
      }
      continue;
    }
    const versions = new Map<string, number>();
    for (const f of fs) {
      const v = versionFromStem(fileStem(f));
      if (v.nameEpoch !== undefined || v.nameStep !== undefined) versions.set(v.base, (versions.get(v.base) ?? 0) + 1);
    }
    const best = [...versions].sort((a, b) => b[1] - a[1])[0];
    if (best && best[1] >= 2 && !seen.has(d)) {
      seen.add(d);
      out.push({ folder: d, why: `${best[1]} saved versions of ${best[0]}` });
    }
  }
  return out;
}

/** Folders whose files are the bare names that other folders hold as `<name>_<6 hex>` copies. */
function namesCopiedElsewhere(byFolder: Map<string, string[]>, files: string[]): Proposal['sourceFolders'] {
  const copiedNames = new Map<string, Set<string>>();
  for (const f of files) {
    const n = nameFromFileName(f, 'copy');
    if (n !== fileStem(f)) copiedNames.set(n, (copiedNames.get(n) ?? new Set()).add(dirName(f)));
  }
  const out: Proposal['sourceFolders'] = [];
  for (const [d, fs] of byFolder) {
    const hits = fs.filter((f) => [...(copiedNames.get(fileStem(f)) ?? [])].some((x) => x !== d)).length;
    if (hits >= 2 || (hits >= 1 && hits === fs.length))
      out.push({ folder: d, why: `${hits} of its ${fs.length} files have copies named <name>_<6 hex> elsewhere` });
  }
  return out;
}

export function formatProposal(root: string, p: Proposal, c: Painter = painter(false)): string {
  const lines = [`${c.paint('bold', root)}: ${p.files} checkpoint files in ${p.folders} folders`];
  if (p.sourceFolders.length) {
    lines.push('source folders found:');
    for (const s of p.sourceFolders) lines.push(`  ${c.paint('blue', s.folder || '.')}  (${s.why})`);
  } else lines.push(c.paint('yellow', `no source folder found: proposing the default (${SEED_MARK})`));
  const layouts = Object.entries(p.layouts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${n}`)
    .join(' · ');
  if (layouts) lines.push(`layouts${p.recognized < p.files ? ` (first ${p.recognized} files)` : ''}: ${layouts}`);
  lines.push('', `proposed ${CONFIG_FILE}:`, configText(p).trimEnd());
  return lines.join('\n');
}

export const configText = (p: Proposal) => `${JSON.stringify(p.config, null, 2)}\n`;

export async function cmdInit(o: { root?: string; yes?: boolean; force?: boolean; paint?: Painter }): Promise<number> {
  const root = resolve(o.root ?? '.');
  await access(root).catch(() => {
    throw new CliUsageError(`${root}: not a folder`);
  });
  const p = await propose(root);
  const out = (s: string) => process.stdout.write(`${s}\n`);
  out(formatProposal(root, p, o.paint));
  const target = join(root, CONFIG_FILE);
  const exists = await access(target).then(
    () => true,
    () => false,
  );
  if (exists && !o.force) {
    out(`\n${CONFIG_FILE} exists already: not replaced (use --force to replace it)`);
    return 1;
  }
  let write = !!o.yes;
  if (!write && process.stdin.isTTY && process.stdout.isTTY) {
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    const answer = await rl.question(`\nwrite ${target}${exists ? ' (replacing it)' : ''}? [y/N] `);
    rl.close();
    write = /^y(es)?$/i.test(answer.trim());
  }
  if (!write) {
    out(`\nnot written${o.yes ? '' : ' (run with --yes to write it)'}`);
    return 0;
  }
  await mkdir(root, { recursive: true });
  await atomicWrite(target, (fh) => fh.writeFile(configText(p)), {
    // A file that appeared while the prompt waited is not replaced either (rename would replace it).
    beforeRename: async () => {
      if (
        !o.force &&
        (await access(target).then(
          () => true,
          () => false,
        ))
      )
        throw new CliUsageError(`${CONFIG_FILE} appeared meanwhile: not replaced (use --force)`);
    },
  });
  out(`\nwrote ${target}`);
  return 0;
}
