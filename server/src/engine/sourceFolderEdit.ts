/**
 * "Use Folder as Source": adds a folder to `sourceFolders` in the workspace's `lora-sync.json`,
 * creating the file if needed and keeping every other key (and their order) as they were. The edit is
 * atomic (temporary file, flush, rename), so a crash never leaves half a config.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { atomicWrite } from '../io/atomicWrite';
import { CONFIG_FILE, ConfigError, DEFAULT_CONFIG, mergeConfig } from './config';

/**
 * `folderRel`: the folder relative to the root, '/' separators. It is stored as a path (it has a '/'
 * or is made to have one) so it names exactly that folder, not every folder whose name contains it.
 * Returns the value that names the folder and the new `sourceFolders`.
 */
export async function addSourceFolder(
  root: string,
  folderRel: string,
): Promise<{ value: string; sourceFolders: string[] }> {
  const rel = folderRel
    .normalize('NFC')
    .replace(/\\/g, '/')
    .replace(/^\.?\/+|\/+$/g, '');
  if (!rel || rel.split('/').some((s) => s === '..' || s === '.'))
    throw new ConfigError(`not a folder inside the workspace: ${folderRel}`);
  // A single name without a slash would match any folder containing it: `train/` names exactly this one.
  const value = rel.includes('/') ? rel : `${rel}/`;
  const path = join(root, CONFIG_FILE);
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  // As config.ts reads it: a byte-order mark is left out, and kept when the file is written back.
  const bom = text?.startsWith('\uFEFF') ? '\uFEFF' : '';
  if (bom) text = text!.slice(1);
  let obj: Record<string, unknown> = {};
  if (text !== undefined) {
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new ConfigError(`${CONFIG_FILE}: not valid JSON (${(e as Error).message}); not changed`);
    }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj))
      throw new ConfigError(`${CONFIG_FILE}: expected an object`);
  }
  const current = mergeConfig(DEFAULT_CONFIG, obj, CONFIG_FILE).sourceFolders; // validates the file as a whole
  if (current.includes(value)) return { value, sourceFolders: current };
  if (current.includes(rel)) return { value: rel, sourceFolders: current };
  // A file without the key had the defaults: they stay (the seed's folders keep working).
  const next = [...current, value];
  const out = { ...obj, sourceFolders: next };
  const indent = text && /^\{\s*\n(\s+)"/.exec(text)?.[1];
  const body = `${bom}${JSON.stringify(out, null, indent || 2)}\n`;
  await atomicWrite(path, async (fh) => {
    await fh.writeFile(body, 'utf8');
  });
  return { value, sourceFolders: next };
}
