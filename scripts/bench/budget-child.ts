/**
 * Child process of `npm run bench:budget`: one lean loop over the files listed in LIST (NUL-separated),
 * doing only the steps up to STEP, so each step's floor is the difference between two runs:
 *   read     read each file whole (one synchronous open/read/close)
 *   zip      + find the end record and walk the zip central directory
 *   crc      + CRC32 of every record's bytes, checked against the directory
 *   hash     + XXH64 of every record's bytes
 *   decode   read each file, then decode its data.pkl with the project's pickle decoder
 *   all      every step the guarantees require and nothing else, in one pass over each file: read,
 *            zip directory, CRC32 of every record, decode data.pkl (the plainly-safe check, else the
 *            safety scan), find the tensors, each tensor's digest (XXH64 leaf + SHA-256 top, as
 *            fingerprint.ts), the metadata's typed texts and their digests, the tensor-list digest:
 *            no checkpoint model, no entry, no recognition, no statuses, no cache (issue 16's floor)
 *   verify   the floor of a cold verify of ROOT by any design that keeps an index: list the files the
 *            config includes, open, fstat and read each, `all` on each, one index line per file
 *            written (leanVerify below)
 * and, the project's own read path step by step (each includes the ones before it):
 *   open         openCheckpoint + close: zip checks, the safety scan, the decoded pickle, the tensor model
 *   recognize    + the layout recognizers (describeCheckpoint + recognize)
 *   fingerprint  + fingerprintCheckpoint: CRC32 and XXH64 of every tensor's bytes
 *   entry        readEntry, the scan's whole per-file work (metadata typed forms and digests, folder facts)
 *   kept         + each entry interned and kept to the end, as the scan keeps its index (the GC's cost)
 *   steps    every step as its own pass (all files read into memory first), each pass's CPU apart:
 *            steadier per-step figures than differences between whole runs
 * Bundled and run with plain node, as dist/cli.js is; prints {files, records, work_ms, cpu_ms} (steps:
 * {read, zip, crc, hash, decode, scan, tensors} in CPU ms).
 */
import '../../server/src/io/gcTuning'; // first: the GC setting, as the CLI and the language server run (our loops and the lean ones alike)
import {
  type BigIntStats,
  closeSync,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { join, relative, sep } from 'node:path';
import { hashBackend } from '../../server/src/formats/hashBackend';
import { decodePickle } from '../../server/src/formats/pickle/decoder';
import { scanDataPkl } from '../../server/src/formats/fileSafety';
import { findTensors } from '../../server/src/formats/torch/torchPickle';
import { openCheckpoint } from '../../server/src/formats/checkpoint';
import { isFormatError } from '../../server/src/formats/errors';
import { fingerprintCheckpoint } from '../../server/src/formats/fingerprint';
import { describeCheckpoint } from '../../server/src/layouts/describe';
import { recognize } from '../../server/src/layouts/recognize';
import { type FileEntry, readEntry } from '../../server/src/engine/loraFile';
import { EntryInterner } from '../../server/src/engine/entryIntern';
import { includedMatcher } from '../../server/src/engine/scanner';
import { loadConfig } from '../../server/src/engine/config';
import { PIPELINE } from './budgetSteps';
import { plainlySafe } from '../../server/src/formats/fileSafety';
import { getKey, mappingEntries } from '../../server/src/formats/pickle/nodes';
import { typedFormJson } from '../../server/src/formats/pyValue';
import { keyDigestOf, metaDigestOf } from '../../server/src/engine/loraFile';
import { hash } from 'node:crypto';
import { itemSize } from '../../server/src/formats/dtypes';

interface Rec {
  name: string;
  crc: number;
  size: number;
  data: number;
}

/** The STORED records of a zip held whole in `b` (torch writes no others; the budget's files are torch's). */
function records(b: Buffer): Rec[] {
  let eocd = b.length - 22;
  while (eocd >= 0 && b.readUInt32LE(eocd) !== 0x06054b50) eocd--;
  if (eocd < 0) return [];
  let n = b.readUInt16LE(eocd + 10);
  let at = b.readUInt32LE(eocd + 16);
  if (n === 0xffff || at === 0xffffffff) {
    // zip64: the locator sits just before the end record
    const z = Number(b.readBigUInt64LE(eocd - 20 + 8));
    n = Number(b.readBigUInt64LE(z + 32));
    at = Number(b.readBigUInt64LE(z + 48));
  }
  const out: Rec[] = [];
  for (let i = 0; i < n; i++) {
    const nameLen = b.readUInt16LE(at + 28);
    const extraLen = b.readUInt16LE(at + 30);
    const commentLen = b.readUInt16LE(at + 32);
    let size = b.readUInt32LE(at + 24);
    let local = b.readUInt32LE(at + 42);
    const extra = at + 46 + nameLen;
    if (size === 0xffffffff || local === 0xffffffff) {
      // zip64 extra field: sizes, then the local header offset, each only when its field is full
      let p = extra + 4;
      if (size === 0xffffffff) {
        size = Number(b.readBigUInt64LE(p));
        p += 16;
      }
      if (local === 0xffffffff) local = Number(b.readBigUInt64LE(p));
    }
    const name = b.toString('utf8', at + 46, extra);
    const data = local + 30 + b.readUInt16LE(local + 26) + b.readUInt16LE(local + 28);
    out.push({ name, crc: b.readUInt32LE(at + 16), size, data });
    at = extra + extraLen + commentLen;
  }
  return out;
}

/** The project's own read path up to `step`, file by file, as the cold scan runs it (sizes from a prior lstat). */
async function pipeline(step: string, files: string[], root: string): Promise<void> {
  const cfg = await loadConfig(root);
  // The keys a scan's lstat gives readEntry (so it does not stat again), taken before the loop.
  const keys = files.map((f) => {
    const st = lstatSync(f, { bigint: true });
    return { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ino: Number(st.ino) };
  });
  const upTo = PIPELINE.indexOf(step);
  const intern = new EntryInterner();
  const kept: FileEntry[] = [];
  let skipped = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < files.length; i++) {
    const rel = relative(root, files[i]).split(sep).join('/');
    if (step === 'entry') {
      await readEntry(files[i], rel, cfg, keys[i]);
      continue;
    }
    if (step === 'kept') {
      // As the scan keeps them: its parts shared with equal ones, held to the end (the index's heap).
      kept.push(intern.entry(await readEntry(files[i], rel, cfg, keys[i])));
      continue;
    }
    // A workspace given on the command line may hold files that are no checkpoint (a README.pt):
    // the scan records those as unrecognized; here they are counted and left out.
    const c = await openCheckpoint(files[i], { expectedSize: keys[i].size }).catch((e) => {
      if (!isFormatError(e)) throw e;
      skipped++;
      return undefined;
    });
    if (!c) continue;
    try {
      if (upTo >= 1) recognize(describeCheckpoint(c, rel, { siblings: [] }), 'copy');
      if (upTo >= 2) await fingerprintCheckpoint(c);
    } finally {
      await c.close();
    }
  }
  report({ step, files: files.length, skipped, kept: kept.length }, t0, c0);
}

async function main(): Promise<void> {
  const [step, list, root] = process.argv.slice(2);
  const files = readFileSync(list, 'utf8').split('\0').filter(Boolean);
  if (step === 'steps') {
    steps(files);
    return;
  }
  if (PIPELINE.includes(step)) {
    await pipeline(step, files, root);
    return;
  }
  if (step === 'all') {
    lean(files);
    return;
  }
  if (step === 'verify') {
    const shard = process.argv[5];
    await leanVerify(root, `${list}.index${shard ? `.${shard.replace('/', 'of')}` : ''}.jsonl`, shard);
    return;
  }
  const h = hashBackend();
  const xx = h.xxh64Now()!;
  const digest = Buffer.alloc(8);
  let recs = 0;
  let bad = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (const f of files) {
    const b = readFileSync(f);
    if (step === 'read') continue;
    const rs = records(b);
    recs += rs.length;
    if (step === 'zip') continue;
    for (const r of rs) {
      const bytes = b.subarray(r.data, r.data + r.size);
      if (step === 'decode') {
        if (r.name.endsWith('/data.pkl')) decodePickle(bytes);
        continue;
      }
      if (h.crc32(bytes) !== r.crc) bad++;
      if (step === 'hash') {
        xx.init();
        xx.update(bytes);
        xx.digestInto(digest, 0);
      }
    }
  }
  report({ step, files: files.length, records: recs, crc_failures: bad }, t0, c0);
}

/** Prints one loop's result line: its counts, its wall time and this process's CPU since `c0`. */
function report(counts: Record<string, unknown>, t0: number, c0: NodeJS.CpuUsage): void {
  const work = performance.now() - t0;
  const c = process.cpuUsage(c0);
  process.stdout.write(`${JSON.stringify({ ...counts, work_ms: work, cpu_ms: (c.user + c.system) / 1000 })}\n`);
}

/** Hashers and scratch space the lean loops share. */
interface Lean {
  h: ReturnType<typeof hashBackend>;
  xx: NonNullable<ReturnType<ReturnType<typeof hashBackend>['xxh64Now']>>;
  top: Buffer;
  recs: number;
  bad: number;
  tensors: number;
}

function leanState(): Lean {
  const h = hashBackend();
  return { h, xx: h.xxh64Now()!, top: Buffer.alloc(16), recs: 0, bad: 0, tensors: 0 };
}

/**
 * Every guarantee for one seed-like file held whole in `b`: CRC32 of every record, the decode (the
 * plainly-safe check, else the safety scan), each tensor's digest (XXH64 leaf + SHA-256 top, as
 * fingerprint.ts), the tensor-list digest, the metadata's typed texts and their digests. Returns the
 * two digests a file's index line holds (undefined: no data.pkl).
 */
function leanFile(s: Lean, b: Buffer): { tensors: string; meta: string } | undefined {
  const rs = records(b);
  s.recs += rs.length;
  const byName = new Map<string, Rec>();
  let pkl: Rec | undefined;
  for (const r of rs) {
    if (s.h.crc32(b.subarray(r.data, r.data + r.size)) !== r.crc) s.bad++;
    byName.set(r.name, r);
    if (r.name.endsWith('/data.pkl')) pkl = r;
  }
  if (!pkl) return undefined;
  const bytes = b.subarray(pkl.data, pkl.data + pkl.size);
  const d = decodePickle(bytes);
  if (!plainlySafe(d, bytes.length)) scanDataPkl(bytes, pkl.name);
  const prefix = pkl.name.slice(0, -'data.pkl'.length);
  const rows: unknown[] = [];
  for (const t of findTensors(d.root)) {
    const rec = byName.get(`${prefix}data/${t.storage.key}`)!;
    const at = rec.data + t.storageOffset * itemSize(t.storage.dtype);
    const n = t.shape.reduce((a, x) => a * x, 1) * itemSize(t.storage.dtype);
    s.xx.oneShotInto!(b.subarray(at, at + n), s.top, 0);
    s.top.writeUInt32LE(n, 8);
    s.top.writeUInt32LE(0, 12);
    rows.push([t.path, t.storage.dtype, t.shape, hash('sha256', s.top, 'hex').slice(0, 32)]);
    s.tensors++;
  }
  const tensors = hash('sha256', JSON.stringify(rows), 'hex').slice(0, 32);
  const keys: Record<string, string> = {};
  const meta = getKey(d.root, 'metadata');
  for (const [k, v] of (meta && mappingEntries(meta)) ?? [])
    if (k.kind === 'str') keys[`metadata.${k.value}`] = keyDigestOf(typedFormJson(v));
  return { tensors, meta: metaDigestOf(keys) };
}

/** The `all` step: everything a cold verify must do to a seed-like file, in one lean pass (see the header). */
function lean(files: string[]): void {
  const s = leanState();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (const f of files) leanFile(s, readFileSync(f));
  report({ step: 'all', files: files.length, records: s.recs, tensors: s.tensors, crc_failures: s.bad }, t0, c0);
}

/**
 * The `verify` step: the floor of a cold verify of `root` by any design that keeps an index, as one
 * process: list the workspace (a plain recursive readdir, the files the config includes, dot folders
 * skipped), then for each file open it, fstat it for the key an index holds (size, mtime in ns,
 * inode: taken on the open file, which costs what the scan's lstat costs), read it whole and do
 * everything `all` does (to zip checkpoints; any other file is only read), then write one JSON line
 * per file (its key and its two digests) to `out` as our cache is written (a temporary file renamed,
 * no fsync). No recognition, entries, statuses, history or report. Prints each part's wall ms, so a
 * reader can take out a part they would not count. `shard` ("k/n"): only every n-th listed file from
 * the k-th, for n of these processes run at once (the floor with n cores: each lists the whole tree).
 */
async function leanVerify(root: string, out: string, shard = '0/1'): Promise<void> {
  const [part, parts] = shard.split('/').map(Number);
  if (!(parts >= 1 && part >= 0 && part < parts)) throw new Error(`shard ${shard}: want k/n with 0 <= k < n`);
  const included = includedMatcher(await loadConfig(root));
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const files: string[] = [];
  const walk = (dir: string, rel: string) => {
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      if (d.name.startsWith('.')) continue;
      const r = rel ? `${rel}/${d.name}` : d.name;
      if (d.isDirectory()) walk(join(dir, d.name), r);
      else if (d.isFile() && included(r)) files.push(join(dir, d.name));
    }
  };
  walk(root, '');
  if (parts > 1) files.splice(0, files.length, ...files.filter((_, i) => i % parts === part));
  const t1 = performance.now();
  const s = leanState();
  const lines: string[] = [];
  let failed = 0;
  for (const f of files) {
    const fd = openSync(f, 'r');
    let k: BigIntStats;
    let b: Buffer;
    try {
      k = fstatSync(fd, { bigint: true });
      b = Buffer.allocUnsafe(Number(k.size));
      for (let got = 0, n = -1; got < b.length && n !== 0; got += n) n = readSync(fd, b, got, b.length - got, got);
    } finally {
      closeSync(fd);
    }
    let d: ReturnType<typeof leanFile>;
    try {
      d = leanFile(s, b);
    } catch {
      failed++; // a file this lean parser cannot walk (our scan would call it corrupt): counted, not fatal
    }
    lines.push(
      JSON.stringify([relative(root, f), Number(k.size), k.mtimeNs.toString(), Number(k.ino), d?.tensors, d?.meta]),
    );
  }
  const t2 = performance.now();
  writeFileSync(`${out}.tmp`, `${lines.join('\n')}\n`);
  renameSync(`${out}.tmp`, out);
  const t3 = performance.now();
  report(
    {
      step: 'verify',
      files: files.length,
      records: s.recs,
      crc_failures: s.bad,
      unparsed: failed,
      list_ms: t1 - t0,
      read_ms: t2 - t1,
      cache_ms: t3 - t2,
    },
    t0,
    c0,
  );
}

/** CPU ms (user + system) that `fn` takes. */
function cpuOf(fn: () => void): number {
  const c0 = process.cpuUsage();
  fn();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000;
}

function steps(files: string[]): void {
  const h = hashBackend();
  const xx = h.xxh64Now()!;
  const digest = Buffer.alloc(8);
  let bufs: Buffer[] = [];
  let recs: Rec[][] = [];
  const out = {
    read: cpuOf(() => {
      bufs = files.map((f) => readFileSync(f));
    }),
    zip: cpuOf(() => {
      recs = bufs.map(records);
    }),
    crc: cpuOf(() => {
      bufs.forEach((b, i) => {
        for (const r of recs[i]) if (h.crc32(b.subarray(r.data, r.data + r.size)) !== r.crc) throw new Error('CRC');
      });
    }),
    hash: cpuOf(() => {
      bufs.forEach((b, i) => {
        for (const r of recs[i]) {
          xx.init();
          xx.update(b.subarray(r.data, r.data + r.size));
          xx.digestInto(digest, 0);
        }
      });
    }),
    decode: cpuOf(() => {
      bufs.forEach((b, i) => {
        for (const r of recs[i]) if (r.name.endsWith('/data.pkl')) decodePickle(b.subarray(r.data, r.data + r.size));
      });
    }),
    // The safety scan of every data.pkl (what torch.load would import), apart from the decode.
    scan: cpuOf(() => {
      bufs.forEach((b, i) => {
        for (const r of recs[i])
          if (r.name.endsWith('/data.pkl')) scanDataPkl(b.subarray(r.data, r.data + r.size), r.name);
      });
    }),
    // Finding the tensors in each decoded tree: each tree decoded, then only the finding measured
    // (holding all 6,000 trees at once would measure the garbage collector instead).
    tensors: ((): number => {
      let sum = 0;
      bufs.forEach((b, i) => {
        for (const r of recs[i]) {
          if (!r.name.endsWith('/data.pkl')) continue;
          const root = decodePickle(b.subarray(r.data, r.data + r.size)).root;
          sum += cpuOf(() => findTensors(root));
        }
      });
      return sum;
    })(),
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
