/**
 * The persisted fingerprint cache: `.lora-sync/index.jsonl`, one entry per file keyed by size, mtime
 * in nanoseconds and inode. A warm start re-reads no file whose key is unchanged. The cache names its
 * format version, the digest algorithm and a hash of the options that shape entries (roles, copy
 * keys...): any of those changing throws the whole cache away rather than trusting it.
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { DIGEST_ALG } from '../formats/fingerprint';
import { atomicWrite } from '../io/atomicWrite';
import { EngineConfig, STATE_DIR } from './config';
import { FileEntry } from './loraFile';

export const INDEX_FILE = 'index.jsonl';
/** Bump when FileEntry's meaning changes. */
export const INDEX_VERSION = 4;

export interface FileKey { size: number; mtimeNs: string; ino: number }

export interface CachedFile {
  /** Its key is the entry's own size, mtimeNs and inode. */
  entry: FileEntry;
  /** The tensors digest this copy had when it was last seen DIVERGED (see Workspace). */
  divergedAt?: string;
}

interface IndexHeader {
  version: number;
  alg: string;
  config: string;
  /** How many file lines follow: a shorter file was cut off. */
  files: number;
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

  /**
   * The cached files, or an empty map when there is no usable cache (missing, other version,
   * damaged). The file is JSON lines — a header, then one file per line — read as a stream, so a
   * workspace of 60,000 files never needs its cache as one string in memory.
   */
  async load(): Promise<{ files: Map<string, CachedFile>; reason?: string }> {
    const files = new Map<string, CachedFile>();
    let stream;
    try {
      stream = createReadStream(this.path, { encoding: 'utf8' });
      await new Promise<void>((resolve, reject) => stream!.once('open', () => resolve()).once('error', reject));
    } catch {
      return { files, reason: 'no cache yet' };
    }
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    let header: IndexHeader | undefined;
    let reason: string | undefined;
    try {
      for await (const line of lines) {
        if (!header) {
          header = JSON.parse(line) as IndexHeader;
          if (header.version !== INDEX_VERSION) reason = `cache version ${header.version}, this engine writes ${INDEX_VERSION}`;
          else if (header.alg !== DIGEST_ALG) reason = `cache digests are ${header.alg}, this engine uses ${DIGEST_ALG}`;
          else if (header.config !== configHash(this.cfg)) reason = 'the options that shape entries changed';
          if (reason) break;
          continue;
        }
        if (!line) continue;
        const f = JSON.parse(line) as CachedFile;
        files.set(f.entry.path, f);
      }
      if (!header || (!reason && header.files !== files.size)) reason = 'the cache file is damaged';
    } catch {
      reason = 'the cache file is damaged';
    } finally {
      lines.close();
      stream.destroy();
    }
    return reason ? { files: new Map(), reason } : { files };
  }

  async save(files: Map<string, CachedFile>): Promise<void> {
    const header: IndexHeader = { version: INDEX_VERSION, alg: DIGEST_ALG, config: configHash(this.cfg), files: files.size };
    await mkdir(join(this.root, STATE_DIR), { recursive: true });
    // The cache can always be rebuilt, so it skips fsync; the rename still keeps it whole.
    await atomicWrite(this.path, async (fh) => {
      let chunk: string[] = [JSON.stringify(header)];
      for (const f of files.values()) {
        chunk.push(JSON.stringify(f));
        if (chunk.length >= 512) {
          await fh.write(chunk.join('\n') + '\n');
          chunk = [];
        }
      }
      if (chunk.length) await fh.write(chunk.join('\n') + '\n');
    }, { noSync: true });
  }
}
