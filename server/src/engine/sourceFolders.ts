/**
 * Which folders hold sources. A `sourceFolders` value is either a text a folder's name contains (the
 * seed's `AKTIF_EN_IYILER`, at any depth) or, when it has `*`, `?` or `/`, a glob on a folder's path
 * relative to the root (`train/**`, `output/*`, `peft/pixel_lora`): real sources live where trainers
 * write, whatever those folders are called. A file is a source when any folder on its path matches.
 */
import micromatch from 'micromatch';

type FolderTest = (folderRel: string, folderName: string) => boolean;

const compiled = new WeakMap<readonly string[], FolderTest[]>();

export function isGlobValue(v: string): boolean {
  return /[*?/]/.test(v);
}

function testsOf(values: readonly string[]): FolderTest[] {
  let tests = compiled.get(values);
  if (tests) return tests;
  tests = values.map((v): FolderTest => {
    if (!isGlobValue(v)) return (_rel, name) => name.includes(v);
    // `train/` means the folder `train`: a trailing slash names a folder, not its contents.
    const glob = v.length > 1 ? v.replace(/\/+$/, '') : v;
    const m = micromatch.matcher(glob);
    return (rel) => m(rel);
  });
  compiled.set(values, tests);
  return tests;
}

/** Per config: folder path -> whether it is or lies in a source folder (a scan asks once per file, folders are few). */
const byFolder = new WeakMap<readonly string[], Map<string, boolean>>();
const MAX_REMEMBERED_FOLDERS = 50_000;

/** Whether the file at `rel` (relative, '/', NFC) lies in a source folder. */
export function matchesSourceFolder(rel: string, values: readonly string[]): boolean {
  const slash = rel.lastIndexOf('/');
  if (slash < 0) return false;
  const dir = rel.slice(0, slash);
  let known = byFolder.get(values);
  if (!known) byFolder.set(values, (known = new Map()));
  let yes = known.get(dir);
  if (yes === undefined) {
    if (known.size >= MAX_REMEMBERED_FOLDERS) known.clear();
    known.set(dir, (yes = folderMatches(dir, values)));
  }
  return yes;
}

function folderMatches(dir: string, values: readonly string[]): boolean {
  const tests = testsOf(values);
  const parts = dir.split('/');
  let folder = '';
  for (const p of parts) {
    const name = p.normalize('NFC');
    folder = folder ? `${folder}/${name}` : name;
    for (const t of tests) if (t(folder, name)) return true;
  }
  return false;
}

/** Whether the config designates any folder by a glob (then an empty match is worth a hint). */
export function hasGlobSource(values: readonly string[]): boolean {
  return values.some(isGlobValue);
}
