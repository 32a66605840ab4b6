/**
 * The persisted fingerprint cache: `.lora-sync/index.json`, one entry per file keyed by size, mtime
 * in nanoseconds and inode. A warm start re-reads no file whose key is unchanged. The cache names its
 * format version, the digest algorithm and a hash of the options that shape entries (roles, copy
 * keys...): any of those changing throws the whole cache away rather than trusting it.
 */
import { createHash } from 'node:crypto';
import { readFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DIGEST_ALG } from '../formats/fingerprint';
import { atomicWrite } from '../io/atomicWrite';
import { EngineConfig, STATE_DIR } from './config';
import { FileEntry } from './loraFile';

export const INDEX_FILE = 'index.json';
/** Bump when FileEntry's meaning changes. */
export const INDEX_VERSION = 3;

export interface FileKey { size: number; mtimeNs: string; ino: number }

export interface CachedFile {
  key: FileKey;
  entry: FileEntry;
  /** The tensors digest this copy had when it was last seen DIVERGED (see Workspace). */
  divergedAt?: string;
}

interface IndexFile {
  version: number;
  alg: string;
  config: string;
  files: Record<string, CachedFile>;
}

export function sameKey(a: FileKey | undefined, b: FileKey): boolean {
  return !!a && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ino === b.ino;
}

/** Only the options that change what an entry holds. */
export function configHash(cfg: EngineConfig): string {
  const shaping = { sourceFolders: cfg.sourceFolders, copyKeys: cfg.copyKeys, ignoreKeys: cfg.ignoreKeys };
  return createHash('sha256').update(JSON.stringify(shaping)).digest('hex').slice(0, 16);
}

export class IndexCache {
  readonly path: string;
  constructor(private readonly root: string, private readonly cfg: EngineConfig) {
    this.path = join(root, STATE_DIR, INDEX_FILE);
  }

  /** The cached files, or an empty map when there is no usable cache (missing, other version, damaged). */
  async load(): Promise<{ files: Map<string, CachedFile>; reason?: string }> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch {
      return { files: new Map(), reason: 'no cache yet' };
    }
    try {
      const j = JSON.parse(text) as IndexFile;
      if (j.version !== INDEX_VERSION) return { files: new Map(), reason: `cache version ${j.version}, this engine writes ${INDEX_VERSION}` };
      if (j.alg !== DIGEST_ALG) return { files: new Map(), reason: `cache digests are ${j.alg}, this engine uses ${DIGEST_ALG}` };
      if (j.config !== configHash(this.cfg)) return { files: new Map(), reason: 'the options that shape entries changed' };
      return { files: new Map(Object.entries(j.files)) };
    } catch {
      return { files: new Map(), reason: 'the cache file is damaged' };
    }
  }

  async save(files: Map<string, CachedFile>): Promise<void> {
    const body: IndexFile = { version: INDEX_VERSION, alg: DIGEST_ALG, config: configHash(this.cfg), files: Object.fromEntries(files) };
    await mkdir(join(this.root, STATE_DIR), { recursive: true });
    // The cache can always be rebuilt, so it skips fsync; the rename still keeps it whole.
    await atomicWrite(this.path, (fh) => fh.writeFile(JSON.stringify(body)), { noSync: true });
  }
}
