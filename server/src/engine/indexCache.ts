/**
 * The persisted fingerprint cache: `.lora-sync/index.jsonl`, one entry per file keyed by size, mtime
 * in nanoseconds and inode. A warm start re-reads no file whose key is unchanged. The cache names its
 * format version, the digest algorithm and a hash of the options that shape entries (roles, copy
 * keys...): any of those changing throws the whole cache away rather than trusting it.
 *
 * Format (JSON lines): a header, then lines that are arrays tagged by their first element.
 *   ["T", [[name, dtype, shape, digest], ...]]   a tensor list, numbered from 0 in order of appearance
 *   ["M", {key: digest, ...}]                     a general-metadata digest set, numbered likewise
 *   ["K", [string, ...]]                          a string list (copy keys, unsafe globals), likewise
 *   ["L", {layout, unit, version, ...}]           the layout fields, likewise; a unit whose path is
 *                                                 the file's own has path null
 *   ["F", path, size, mtimeNs, ino, kind, role, unsafeGlobals, tensorList, tensorsDigest, metaDigest,
 *         metaSet, copyKeys, syncInfo, format, error, loraId, name, idFrom, divergedAt, mtimeMs, layout]
 * A file line points at the lists, sets and layouts before it (-1: empty or none), so the thousands
 * of copies that hold their source's tensors, metadata, copy keys and layout are written once and
 * share one object once loaded; absent values are null; mtimeMs is null when it is the one mtimeNs
 * gives. A size of -1 marks a file that was racily clean when saved (changed too shortly before it
 * was read for its key to prove the bytes unchanged since): no file has that key, so it is read again.
 */
import { createHash } from 'node:crypto';
import { writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { DIGEST_ALG } from '../formats/fingerprint';
import { atomicWrite } from '../io/atomicWrite';
import { ensureRealDir } from '../io/realDir';
import { type EngineConfig, STATE_DIR } from './config';
import { type FileEntry, makeEntry, msOfNs, type TensorEntry } from './loraFile';
import { EntryInterner, sameRecord, sameTensors } from './entryIntern';

export const INDEX_FILE = 'index.jsonl';
/** Bump when FileEntry's meaning changes. */
export const INDEX_VERSION = 12; // 12: files with storages outside plain tensors (quantized...) are unrecognized, not LoRAs. 11: copy keys, unsafe globals and layouts written once and referenced (issue 16). 10: short metadata values inline in metaKeys, metaDigest over key order (issue 16). 9: a folder unit's config digest (the sync checks it). 8: layouts (layout, unit, version, session, why, adapter_config key, embedded-hash issues). 7: 7: the safety scan (UNSAFE outranks CORRUPT, TRAILING_DATA): older entries are re-read

export interface FileKey {
  size: number;
  mtimeNs: string;
  ino: number;
}

export interface CachedFile {
  /** Its key is the entry's own size, mtimeNs and inode. */
  entry: FileEntry;
  /** The tensors digest this copy had when it was last seen DIVERGED (see Workspace). */
  divergedAt?: string;
  /** Racily clean (see Workspace.racy): saved with a key no file matches, so the next start reads it again. */
  racy?: boolean;
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
  constructor(
    private readonly root: string,
    private readonly cfg: EngineConfig,
  ) {
    this.path = join(root, STATE_DIR, INDEX_FILE);
  }

  /**
   * The cached files, or an empty map when there is no usable cache (missing, other version,
   * damaged). Read a chunk at a time, so a workspace of 60,000 files never needs its cache as one
   * string in memory.
   */
  async load(): Promise<{ files: Map<string, CachedFile>; reason?: string }> {
    let fh;
    try {
      fh = await open(this.path, 'r');
    } catch {
      return { files: new Map(), reason: 'no cache yet' };
    }
    const reader = new CacheReader(this.cfg);
    try {
      // A chunk at a time, decoded up to its last newline (one decode and one split per chunk; the
      // bytes of a line cut by the chunk's end move to the front of the buffer for the next read).
      let buf = Buffer.allocUnsafe(1 << 20);
      let fill = 0;
      for (;;) {
        if (fill === buf.length) buf = Buffer.concat([buf, Buffer.allocUnsafe(buf.length)]); // a line longer than the buffer
        const { bytesRead } = await fh.read(buf, fill, buf.length - fill, null);
        fill += bytesRead;
        const end = bytesRead ? buf.lastIndexOf(10, fill - 1) + 1 : fill;
        for (const line of buf.toString('utf8', 0, end).split('\n')) if (line && !reader.line(line)) break;
        if (reader.reason || !bytesRead) break;
        buf.copy(buf, 0, end, fill);
        fill -= end;
      }
    } catch {
      reader.reason ??= 'the cache file is damaged';
    } finally {
      await fh.close();
    }
    return reader.result();
  }

  async save(files: Map<string, CachedFile>): Promise<void> {
    const header: IndexHeader = {
      version: INDEX_VERSION,
      alg: DIGEST_ALG,
      config: configHash(this.cfg),
      files: files.size,
    };
    await ensureRealDir(join(this.root, STATE_DIR));
    const w = new CacheWriter();
    // The cache can always be rebuilt, so it skips fsync; the rename still keeps it whole. Each chunk
    // is written synchronously (a page-cache copy of ~300 kB, well under a millisecond; an awaited
    // write per chunk cost ~30 ms more on 6,000 files), then the event loop gets a turn.
    await atomicWrite(
      this.path,
      async (fh) => {
        let chunk: string[] = [JSON.stringify(header)];
        for (const f of files.values()) {
          w.file(f, chunk);
          if (chunk.length >= 512) {
            writeAllSync(fh.fd, chunk);
            chunk = [];
            await new Promise<void>((r) => setImmediate(r));
          }
        }
        if (chunk.length) writeAllSync(fh.fd, chunk);
      },
      { noSync: true },
    );
  }
}

/**
 * Writes the lines, each ended by a newline, to `fd` whole (a regular file may take a write in parts).
 * Each line is encoded straight into one buffer: joining them first into one string cost more than
 * the encoding and the write together (a workspace's paths make most lines two-byte strings).
 */
function writeAllSync(fd: number, lines: string[]): void {
  let room = 0;
  for (const l of lines) room += l.length * 3 + 1; // UTF-8 takes at most 3 bytes per UTF-16 unit
  const b = Buffer.allocUnsafe(room);
  let n = 0;
  for (const l of lines) {
    n += b.write(l, n, 'utf8');
    b[n++] = 10;
  }
  for (let at = 0; at < n; ) at += writeSync(fd, b, at, n - at);
}

type FileLine = [
  'F',
  string,
  number,
  string,
  number,
  FileEntry['kind'],
  FileEntry['role'] | null,
  number,
  number,
  string,
  string,
  number,
  number,
  FileEntry['syncInfo'],
  FileEntry['format'] | null,
  FileEntry['error'] | null,
  string | null,
  string | null,
  FileEntry['idFrom'] | null,
  string | null,
  number | null,
  number,
];

/** The entry fields real layouts added (one object, null for the seed's files that have none). */
type LayoutFields = Pick<
  FileEntry,
  'layout' | 'unit' | 'version' | 'session' | 'why' | 'sideKey' | 'configDigest' | 'hashIssues'
>;

/** As written: a unit whose path is the file's own has path null (most units are the file itself). */
type LayoutLine = Omit<LayoutFields, 'unit'> & { unit?: { kind: 'file' | 'folder'; path: string | null } };

function layoutFields(e: FileEntry): LayoutLine | null {
  const x: LayoutLine = {};
  if (e.layout) x.layout = e.layout;
  if (e.unit) x.unit = e.unit.path === e.path ? { kind: e.unit.kind, path: null } : e.unit;
  if (e.version) x.version = e.version;
  if (e.session) x.session = e.session;
  if (e.why) x.why = e.why;
  if (e.sideKey) x.sideKey = e.sideKey;
  if (e.configDigest) x.configDigest = e.configDigest;
  if (e.hashIssues) x.hashIssues = e.hashIssues;
  return Object.keys(x).length ? x : null;
}

/**
 * Writes each tensor list, digest set, string list and layout once, however many files hold it. A
 * list or set is found by identity (interned entries share one object), then by the digest its entry
 * already holds and a comparison with those written: an equal one held by another object (read in
 * another scan) is not written twice, and the writer keeps no text of what it wrote. Keyed by their
 * JSON texts, the 100x workspace's 34,000 lists and sets kept 12 MB of text alive through the save,
 * when the scan's memory peaks.
 */
class CacheWriter {
  private readonly lists = new Refs<TensorEntry[]>('T', sameTensors, (ts) =>
    ts.map((t) => [t.name, t.dtype, t.shape, t.digest]),
  );
  private readonly sets = new Refs<Record<string, string>>('M', sameRecord, (m) => m);
  /** String lists (copy keys, unsafe globals): a few short ones in a workspace, keyed by their text. */
  private readonly keyIds = new Map<string[], number>();
  private readonly keyTexts = new Map<string, number>();
  /** Layout lines by their text (a fresh object per file: no identity to go by). */
  private readonly layoutTexts = new Map<string, number>();

  private keys(k: string[], out: string[]): number {
    if (!k.length) return -1;
    let id = this.keyIds.get(k);
    if (id === undefined) {
      id = byText(JSON.stringify(k), this.keyTexts, 'K', out);
      this.keyIds.set(k, id);
    }
    return id;
  }

  file(f: CachedFile, out: string[]): void {
    const e = f.entry;
    const list = e.tensors.length ? this.lists.id(e.tensors, e.tensorsDigest, out) : -1;
    const set = Object.keys(e.metaKeys).length ? this.sets.id(e.metaKeys, e.metaDigest, out) : -1;
    const layout = layoutFields(e);
    const layoutId = layout ? byText(JSON.stringify(layout), this.layoutTexts, 'L', out) : -1;
    const line: FileLine = [
      'F',
      e.path,
      f.racy ? -1 : e.size,
      e.mtimeNs,
      e.ino,
      e.kind,
      e.role ?? null,
      this.keys(e.unsafeGlobals, out),
      list,
      e.tensorsDigest,
      e.metaDigest,
      set,
      this.keys(e.copyKeys, out),
      e.syncInfo,
      e.format ?? null,
      e.error ?? null,
      e.loraId ?? null,
      e.name ?? null,
      e.idFrom ?? null,
      f.divergedAt ?? null,
      e.mtimeMs === msOfNs(e.mtimeNs) ? null : e.mtimeMs,
      layoutId,
    ];
    out.push(JSON.stringify(line));
  }
}

/** The number of the line holding `text`, written now (tagged) if it is new; numbers count from 0 by order of appearance. */
function byText(text: string, texts: Map<string, number>, tag: string, out: string[]): number {
  let id = texts.get(text);
  if (id === undefined) {
    id = texts.size;
    texts.set(text, id);
    out.push(`["${tag}",${text}]`);
  }
  return id;
}

/** The lines of one tag whose values are found by identity, then by digest and comparison (see CacheWriter). */
class Refs<T> {
  private readonly ids = new Map<T, number>();
  /**
   * The values written, by digest. A digest says which values may be equal; only a comparison says
   * they are (the tensors digest is over the list sorted by name, the metadata digest over sorted
   * keys: the same list in another order has its digest), so each digest keeps every value written.
   */
  private readonly byDigest = new Map<string, Array<{ value: T; id: number }>>();
  private count = 0;

  constructor(
    private readonly tag: string,
    private readonly same: (a: T, b: T) => boolean,
    private readonly encode: (v: T) => unknown,
  ) {}

  id(v: T, digest: string, out: string[]): number {
    let id = this.ids.get(v);
    if (id !== undefined) return id;
    const known = this.byDigest.get(digest);
    id = known?.find((k) => this.same(k.value, v))?.id;
    if (id === undefined) {
      id = this.count++;
      out.push(`["${this.tag}",${JSON.stringify(this.encode(v))}]`);
      if (known) known.push({ value: v, id });
      else this.byDigest.set(digest, [{ value: v, id }]);
    }
    this.ids.set(v, id);
    return id;
  }
}

/** Parses the lines of a cache; `reason` says why it is not usable. */
class CacheReader {
  reason: string | undefined;
  private header: IndexHeader | undefined;
  private readonly files = new Map<string, CachedFile>();
  private readonly lists: TensorEntry[][] = [];
  private readonly sets: Array<Record<string, string>> = [];
  private readonly keyLists: string[][] = [];
  private readonly layouts: LayoutLine[] = [];
  private readonly intern = new EntryInterner();
  constructor(private readonly cfg: EngineConfig) {}

  /** False once the cache is known to be unusable. */
  line(line: string): boolean {
    if (!this.header) {
      const h = (this.header = JSON.parse(line) as IndexHeader);
      if (h.version !== INDEX_VERSION) this.reason = `cache version ${h.version}, this engine writes ${INDEX_VERSION}`;
      else if (h.alg !== DIGEST_ALG) this.reason = `cache digests are ${h.alg}, this engine uses ${DIGEST_ALG}`;
      else if (h.config !== configHash(this.cfg)) this.reason = 'the options that shape entries changed';
      return !this.reason;
    }
    const v = JSON.parse(line) as unknown[];
    if (!Array.isArray(v)) return this.damaged();
    if (v[0] === 'T') {
      const rows = v[1] as Array<[string, string, number[], string]>;
      this.lists.push(
        rows.map(([name, dtype, shape, digest]) => ({
          name: this.intern.str(name),
          dtype: this.intern.str(dtype),
          shape: this.intern.shape(shape),
          digest,
        })),
      );
    } else if (v[0] === 'M') {
      this.sets.push(v[1] as Record<string, string>);
    } else if (v[0] === 'K') {
      if (!Array.isArray(v[1])) return this.damaged();
      this.keyLists.push((v[1] as string[]).map((x) => this.intern.str(x)));
    } else if (v[0] === 'L') {
      if (typeof v[1] !== 'object' || v[1] === null || Array.isArray(v[1])) return this.damaged();
      this.layouts.push(v[1] as LayoutLine);
    } else if (v[0] === 'F') {
      const f = this.file(v as FileLine);
      if (!f) return this.damaged();
      this.files.set(f.entry.path, f);
    } else return this.damaged();
    return true;
  }

  private damaged(): false {
    this.reason = 'the cache file is damaged';
    return false;
  }

  /** The entry as saved (absent fields undefined, as makeEntry has them). */
  private file(v: FileLine): CachedFile | undefined {
    const [
      ,
      path,
      size,
      mtimeNs,
      ino,
      kind,
      role,
      unsafeGlobals,
      list,
      tensorsDigest,
      metaDigest,
      set,
      copyKeys,
      syncInfo,
      format,
      error,
      loraId,
      name,
      idFrom,
      divergedAt,
      mtimeMs,
      layout,
    ] = v;
    // References are whole numbers from -1 up: anything else (a hand-edited "length") is damage.
    if (![list, set, unsafeGlobals, copyKeys, layout].every((i) => Number.isInteger(i) && i >= -1)) return undefined;
    const tensors = list === -1 ? [] : this.lists[list];
    const metaKeys = set === -1 ? {} : this.sets[set];
    const unsafe = unsafeGlobals === -1 ? [] : this.keyLists[unsafeGlobals];
    const keys = copyKeys === -1 ? [] : this.keyLists[copyKeys];
    const laid = layout === -1 ? undefined : this.layouts[layout];
    if (!tensors || !metaKeys || !unsafe || !keys || (layout !== -1 && !laid)) return undefined;
    if (typeof path !== 'string' || typeof mtimeNs !== 'string') return undefined;
    const e = makeEntry({
      path,
      size,
      mtimeMs: mtimeMs ?? msOfNs(mtimeNs),
      mtimeNs,
      ino,
      kind,
      format: format ?? undefined,
      role: role ?? undefined,
      error: error ?? undefined,
      unsafeGlobals: unsafe,
      loraId: this.intern.str(loraId ?? undefined),
      name: this.intern.str(name ?? undefined),
      idFrom: idFrom ?? undefined,
      ...(laid as LayoutFields | undefined),
      // A layout line is shared: the unit is the file's own object, with the file's path when it was left out.
      unit: laid?.unit && { kind: laid.unit.kind, path: laid.unit.path ?? path },
      tensors,
      tensorsDigest: this.intern.str(tensorsDigest),
      metaDigest: this.intern.str(metaDigest),
      metaKeys,
      copyKeys: keys,
      syncInfo: this.intern.syncInfo(syncInfo),
    });
    return divergedAt === null ? { entry: e } : { entry: e, divergedAt };
  }

  result(): { files: Map<string, CachedFile>; reason?: string } {
    if (!this.reason && (!this.header || this.header.files !== this.files.size))
      this.reason = 'the cache file is damaged';
    return this.reason ? { files: new Map(), reason: this.reason } : { files: this.files };
  }
}
