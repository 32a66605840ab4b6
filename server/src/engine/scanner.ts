/**
 * What a scan needs to know of the disk before it reads any checkpoint: which files there are (and
 * which temporary files killed writes left), their (size, mtime ns, inode) keys, how a path is keyed,
 * and when a key may not be trusted yet.
 */
import { lstatSync } from 'node:fs';
import { relative, sep } from 'node:path';
import fg from 'fast-glob';
import type { EngineConfig } from './config';
import type { FileKey } from './indexCache';
import type { FileEntry } from './loraFile';
import { isTempFile } from '../io/atomicWrite';
import micromatch from 'micromatch';
import { blankEntry } from './loraFile';
import { TEMP_MARK } from '../io/atomicWrite';
import { isPartialDownloadName, settling } from '../layouts/growing';

/**
 * How recent an mtime must be, at the time its key is taken, for the key not to be trusted later: more
 * than the timestamp tick of the file system. Where mtimes have a fraction of a second (ext4, xfs,
 * btrfs: one kernel tick, at most 10 ms; exFAT 10 ms; NTFS 100 ns), 100 ms; where they are whole
 * seconds (FAT's 2 s, HFS+'s 1 s), 3 s. Files written less than this before a read are read again once.
 */
export function racyWindowMs(mtimeNs: string): number {
  return mtimeNs.endsWith('000000000') ? 3000 : 100;
}

/** A path with no '.', '..' or empty segment and no trailing '/': string prefixes then say what path.relative would. */
export const isClean = (p: string) => !/(^|\/)\.{1,2}(\/|$)|\/\/|.\/$/.test(p);
let lastRoot = '';
let lastRootClean = false;

/** Relative path with '/' separators, NFC: how every path is shown and keyed. */
export function relPath(root: string, abs: string): string {
  // Fast path for what listings give (the root joined with a clean relative path): a scan does this per file.
  if (sep === '/' && abs.length > root.length + 1 && abs.charCodeAt(root.length) === 47 && abs.startsWith(root)) {
    if (root !== lastRoot) {
      lastRoot = root;
      lastRootClean = root.startsWith('/') && isClean(root);
    }
    const rest = abs.slice(root.length + 1);
    if (lastRootClean && rest.charCodeAt(0) !== 47 && isClean(rest))
      return /[^\x00-\x7f]/.test(rest) ? rest.normalize('NFC') : rest;
  }
  return relative(root, abs).split(sep).join('/').normalize('NFC');
}

/** Temporary files of a killed write, anywhere under the root (dot folders excepted, as in scans). */
export const TEMP_GLOB = `**/.*${TEMP_MARK}*`;

/**
 * Every checkpoint file under the root that the config includes, relative as spelled on disk (links
 * are not followed). The same walk lists the temporary files a killed write left (`.<name>.lora-sync-tmp-…`,
 * matched by name although dot files are otherwise skipped), so a sync need not walk the workspace again.
 */
export async function listCheckpoints(root: string, cfg: EngineConfig): Promise<{ files: string[]; temps: string[] }> {
  const listed = await fg([...cfg.include, TEMP_GLOB], {
    cwd: root,
    ignore: cfg.exclude,
    onlyFiles: true,
    followSymbolicLinks: false,
    dot: false,
    suppressErrors: true,
  });
  const files: string[] = [];
  const temps: string[] = [];
  for (const r of listed) {
    const name = r.slice(r.lastIndexOf('/') + 1);
    if (isTempFile(name)) temps.push(r);
    // A download in progress (`.part`, `.incomplete`, ...) is never read, whatever the globs include.
    else if (!isPartialDownloadName(name)) files.push(r);
  }
  return { files, temps };
}

/** The key an entry was read with. */
export function entryKey(e: FileEntry): FileKey {
  return { size: e.size, mtimeNs: e.mtimeNs, ino: e.ino };
}

/** (size, mtime in ns, inode) of a regular file; undefined when it is gone or not a file. Links are not followed. */
export async function fileKey(abs: string): Promise<FileKey | undefined> {
  return fileKeySync(abs);
}

export function fileKeySync(abs: string): FileKey | undefined {
  try {
    // Synchronous: microseconds, where an asynchronous lstat waits on the thread pool.
    const st = lstatSync(abs, { bigint: true });
    if (!st.isFile()) return undefined;
    return { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ino: Number(st.ino) };
  } catch {
    return undefined;
  }
}

/** Whether a relative path is one the config includes (dot folders never); the globs compiled once. */
export function includedMatcher(cfg: EngineConfig): (rel: string) => boolean {
  // micromatch.isMatch compiles the globs at every call; matcher takes a list as isMatch does,
  // whatever its typings say.
  const include = micromatch.matcher(cfg.include as unknown as string);
  const exclude = micromatch.matcher(cfg.exclude as unknown as string);
  return (rel) => !rel.split('/').some((seg) => seg.startsWith('.')) && include(rel) && !exclude(rel);
}

/** A file that vanished or cannot be opened (permissions): reported, never a reason to stop. */
export function unreadableEntry(rel: string, cfg: EngineConfig, code: string, message: string): FileEntry {
  const e = blankEntry(rel, cfg, { size: 0, mtimeNs: '0', ino: 0 });
  e.error = { code, message };
  return e;
}

/**
 * Whether a cached entry's side file still holds: a PEFT adapter's general metadata is its
 * `adapter_config.json`, so the entry is keyed by that file's key too.
 */
export function sideKeyHolds(e: FileEntry, abs: string): boolean {
  if (!e.sideKey) return true;
  const dir = abs.slice(0, abs.lastIndexOf('/'));
  try {
    const st = lstatSync(`${dir}/adapter_config.json`, { bigint: true });
    return e.sideKey === `${st.size}:${st.mtimeNs}:${st.ino}`;
  } catch {
    return e.sideKey === 'none';
  }
}

/** Files a scan keys (an lstat each, ~10 µs) between two turns of the event loop: about 10 ms. */
export const KEYS_PER_TURN = 1024;

/**
 * Whether a file was still being written while it was read (a trainer's save, a download): its key
 * (size, mtime, inode), taken before the read, differs from one taken after it, or an aria2 control
 * file says it is downloading. Only files whose mtime lies within `settleMs` of the scan are looked
 * at again (one lstat each), so a settled workspace costs nothing more and no scan ever waits. Such a
 * file is not judged now; the watcher (or the next scan) reads it once it settles.
 */
export function grewWhileRead(f: { abs: string; rel: string; key: FileKey }, settleMs: number, now: number): boolean {
  if (settleMs <= 0 || now - msOfKey(f.key) >= settleMs) return false;
  const k = fileKeySync(f.abs);
  const name = f.rel.slice(f.rel.lastIndexOf('/') + 1);
  const siblings = existsAria2(f.abs) ? [`${name}.aria2`] : [];
  const before = { size: f.key.size, mtimeMs: Number(f.key.mtimeNs), ino: f.key.ino, at: 0 };
  const after = k ? { size: k.size, mtimeMs: Number(k.mtimeNs), ino: k.ino, at: 0 } : { ...before, size: -1 };
  return settling(name, before, after, 0, siblings).state === 'growing';
}

function msOfKey(k: FileKey): number {
  return Number(BigInt(k.mtimeNs) / 1_000_000n);
}

function existsAria2(abs: string): boolean {
  try {
    lstatSync(`${abs}.aria2`);
    return true;
  } catch {
    return false;
  }
}
