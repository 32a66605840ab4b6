/**
 * The fast paths of a scan give what the general paths give: typed metadata text written directly,
 * zip directories parsed from bytes in memory, fingerprints over views of a file read whole, the
 * pickle post-pass skipped only where it cannot fail, pairwise tensor comparison, relative paths
 * without path.relative, and the compact cache (entries and shared parts come back as they were).
 * Run on the torch-written fixtures (test/fixtures/torch and the fixture workspace).
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { openCheckpoint } from '../../server/src/formats/checkpoint';
import { fingerprintCheckpoint, tensorTypedLookup } from '../../server/src/formats/fingerprint';
import { typedForm, typedFormJson } from '../../server/src/formats/pyValue';
import { FormatError } from '../../server/src/formats/errors';
import { ZipReader } from '../../server/src/formats/zip/zipReader';
import { decodePickle } from '../../server/src/formats/pickle/decoder';
import * as N from '../../server/src/formats/pickle/nodes';
import type { PyNode } from '../../server/src/formats/pickle/nodes';
import { compareWithSource } from '../../server/src/engine/statusRules';
import { INLINE_META_TEXT, keyDigestOf, metaDigestOf } from '../../server/src/engine/loraFile';
import { createHash } from 'node:crypto';
import type { FileEntry, TensorEntry } from '../../server/src/engine/loraFile';
import { relPath, Workspace } from '../../server/src/engine/workspace';
import { type CachedFile, IndexCache } from '../../server/src/engine/indexCache';
import { loadConfig } from '../../server/src/engine/config';
import { primarySource } from '../../server/src/engine/copyMap';
import { copyFixtureWorkspace, copyLayoutsWorkspace } from '../support/files';
import { shutdownEntryPool } from '../../server/src/engine/entryPool';

const FIX = join(__dirname, '..', 'fixtures', 'torch');
const manifest: { fixtures: Array<{ file: string; expect?: string }> } = JSON.parse(
  readFileSync(join(FIX, 'manifest.json'), 'utf8'),
);
const zipFixtures = manifest.fixtures.filter(
  (f) => f.file.endsWith('.pt') && readFileSync(join(FIX, f.file)).subarray(0, 2).toString('latin1') === 'PK',
);

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
    return 'ok';
  } catch (e) {
    if (!(e instanceof FormatError)) throw e;
    return e.code;
  }
}

describe('scan fast paths give what the general paths give', function () {
  this.timeout(60000);

  it('typedFormJson is JSON.stringify(typedForm(…, full)) for every fixture tree and every node kind', async () => {
    let checked = 0;
    for (const f of manifest.fixtures) {
      const c = await openCheckpoint(join(FIX, f.file)).catch(() => undefined);
      if (!c) continue;
      try {
        if (!c.root) continue;
        const lookup = tensorTypedLookup(c, await fingerprintCheckpoint(c));
        const walk = (n: PyNode, depth: number): void => {
          assert.equal(typedFormJson(n, lookup), JSON.stringify(typedForm(n, lookup, true)), `${f.file}`);
          checked++;
          if (depth > 3) return;
          for (const [, v] of N.mappingEntries(n) ?? []) walk(v, depth + 1);
        };
        walk(c.root, 0);
      } finally {
        await c.close();
      }
    }
    assert.ok(checked > 50, `only ${checked} subtrees checked`);
    const g = (m: string, n: string) => N.global(m, n);
    const reduce = (callable: PyNode, args: PyNode[]): PyNode => ({
      kind: 'object',
      how: 'reduce',
      callable,
      args: N.tuple(args),
    });
    const odd: PyNode[] = [
      N.none(),
      N.bool(true),
      N.bool(false),
      N.int(-(2n ** 70n)),
      N.float(-0),
      N.float(NaN),
      N.float(Infinity),
      N.float(1e-310),
      N.str('quote " backslash \\ newline \n tab \t unicode ş ⭐ lone \ud800'),
      { kind: 'bytes', value: new Uint8Array([0, 255, 16]) },
      N.list([]),
      N.tuple([N.int(1), N.str('a')]),
      N.dict([
        [N.int(1), N.str('one')],
        [N.tuple([]), N.none()],
      ]),
      { kind: 'set', items: [N.str('b'), N.str('a'), N.int(3)], frozen: false },
      { kind: 'set', items: [], frozen: true },
      g('os', 'system'),
      { kind: 'persid', pid: N.tuple([N.str('storage'), N.str('0')]), binary: true },
      reduce(g('_codecs', 'encode'), [N.str('\u00ff\u0001'), N.str('latin1')]),
      reduce(g('builtins', 'set'), [N.list([N.int(2), N.int(1)])]),
      reduce(g('numpy.core.multiarray', 'scalar'), [
        reduce(g('numpy', 'dtype'), [N.str('f8'), N.bool(false), N.bool(true)]),
        { kind: 'bytes', value: new Uint8Array(8) },
      ]),
      reduce(g('datetime', 'datetime'), [
        { kind: 'bytes', value: new Uint8Array([7, 233, 12, 4, 10, 50, 0, 0, 0, 1]) },
      ]),
      {
        kind: 'object',
        how: 'reduce',
        callable: g('collections', 'OrderedDict'),
        args: N.tuple([]),
        setitems: [[N.str('k'), N.int(1)]],
        state: N.dict([]),
      },
      {
        kind: 'object',
        how: 'newobj_ex',
        callable: g('m', 'C'),
        args: N.tuple([N.int(1)]),
        kwargs: N.dict([[N.str('x'), N.int(2)]]),
        appends: [N.int(3)],
        setitems: [[N.str('y'), N.int(4)]],
        state: N.str('s'),
        extraStates: [N.int(5)],
      },
      { kind: 'object', how: 'obj', callable: N.str('not a global'), args: N.tuple([]) },
    ];
    for (const n of odd) assert.equal(typedFormJson(n), JSON.stringify(typedForm(n, undefined, true)));
  });

  it('a zip parsed from bytes in memory has the records, and the errors, of one parsed through a file handle', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lora-zipmem-'));
    try {
      for (const f of zipFixtures) {
        const p = join(FIX, f.file);
        const bytes = readFileSync(p);
        const code = await codeOf(() => ZipReader.fromBytes(bytes));
        assert.equal(code, await codeOf(ZipReader.open(p).then((z) => z.close())), f.file);
        if (code !== 'ok') continue;
        const a = ZipReader.fromBytes(bytes);
        const b = await ZipReader.open(p);
        assert.deepEqual(a.records, b.records, f.file);
        try {
          for (const r of a.records) {
            const [x, y] = await Promise.all([
              a.read(r).catch((e: FormatError) => e.code),
              b.read(r).catch((e: FormatError) => e.code),
            ]);
            assert.deepEqual(x, y, `${f.file} ${r.name}`);
            assert.deepEqual(await a.verifyCrc(r), await b.verifyCrc(r));
          }
        } finally {
          await b.close();
        }
      }
      // Every truncation, and a byte flip in each header, fail the same way on both paths.
      const small = readFileSync(join(FIX, 'seed_copy.pt'));
      const variants: Buffer[] = [];
      for (let n = 0; n < small.length; n += 97) variants.push(small.subarray(0, n));
      for (let at = 0; at < small.length; at += 211) {
        const v = Buffer.from(small);
        v[at] ^= 0x5a;
        variants.push(v);
      }
      const scratch = join(dir, 'v.pt');
      for (const v of variants) {
        await writeFile(scratch, v);
        assert.equal(
          await codeOf(() => ZipReader.fromBytes(v)),
          await codeOf(ZipReader.open(scratch).then((z) => z.close())),
        );
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fingerprints over the bytes in memory equal the streamed ones, CRC failures included', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lora-fpmem-'));
    try {
      const files = manifest.fixtures.map((f) => join(FIX, f.file));
      // a tensor byte flipped: a CRC failure both ways
      const bad = join(dir, 'flipped.pt');
      const b = Buffer.from(readFileSync(join(FIX, 'seed_copy.pt')));
      const z = ZipReader.fromBytes(b);
      const rec = z.records.find((r) => /\/data\/\d+$/.test(r.name))!;
      b[rec.dataOffset + 3] ^= 1;
      await writeFile(bad, b);
      files.push(bad);
      let compared = 0;
      for (const p of files) {
        const c = await openCheckpoint(p).catch(() => undefined);
        if (!c) continue;
        try {
          assert.ok(c.inMemory && c.bytes, `${p} is read whole`);
          const mem = await fingerprintCheckpoint(c);
          const streamed = await fingerprintCheckpoint({ ...c, bytes: undefined });
          assert.deepEqual(mem, streamed, p);
          if (p === bad) assert.equal(mem.crcFailures.length, 1);
          compared++;
        } finally {
          await c.close();
        }
      }
      assert.ok(compared >= 10);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the pickle post-pass still runs wherever it can fail: leaf references past maxNodes, deep trees, shared containers', () => {
    // ['a', 'a', ... 20 times] through BINGET of one memoized str: 2 nodes created, 21 once expanded
    const pk = Buffer.concat([
      Buffer.from('\x80\x02](X\x01\x00\x00\x00aq\x00', 'latin1'),
      Buffer.from('h\x00'.repeat(19), 'latin1'),
      Buffer.from('e.', 'latin1'),
    ]);
    assert.equal((decodePickle(pk).root as N.PyList).items.length, 20);
    assert.throws(
      () => decodePickle(pk, { maxNodes: 15 }),
      (e: FormatError) => e.code === 'PICKLE_LIMIT' && /once shared references are expanded/.test(e.message),
    );
    // a list holding itself: only a shared container can make a cycle
    assert.throws(
      () => decodePickle(Buffer.from('\x80\x02]q\x00h\x00a.', 'latin1')),
      (e: FormatError) => e.code === 'PICKLE_LIMIT' && /cyclic/.test(e.message),
    );
    // nested 30 deep with a depth limit of 20, no memo at all
    const deep = Buffer.concat([
      Buffer.from('\x80\x02', 'latin1'),
      Buffer.from(']'.repeat(30), 'latin1'),
      Buffer.from('a'.repeat(29), 'latin1'),
      Buffer.from('.', 'latin1'),
    ]);
    assert.throws(
      () => decodePickle(deep, { maxDepth: 20 }),
      (e: FormatError) => e.code === 'PICKLE_LIMIT' && /deeper than 20/.test(e.message),
    );
    assert.doesNotThrow(() => decodePickle(deep));
  });

  it('pairwise tensor comparison agrees with the lookup one, duplicate names included', () => {
    const t = (name: string, digest: string, shape = [4, 16]) => ({ name, dtype: 'float32', shape, digest });
    const entry = (path: string, tensors: FileEntry['tensors']): FileEntry => ({
      path,
      size: 1,
      mtimeMs: 1,
      mtimeNs: '1000000',
      ino: 1,
      kind: 'lora',
      role: 'copy',
      unsafeGlobals: [],
      loraId: 'l',
      name: 'L',
      tensors,
      tensorsDigest: 'T',
      metaDigest: 'M',
      metaKeys: {},
      copyKeys: [],
      syncInfo: { lastSyncMatch: 50 },
    });
    const src = entry('src.pt', [t('a', '1'), t('b', '2')]);
    assert.equal(compareWithSource(entry('c.pt', [t('a', '1'), t('b', '2')]), src).status, 'IN_SYNC');
    assert.equal(compareWithSource(entry('c.pt', src.tensors), src).status, 'IN_SYNC');
    assert.equal(compareWithSource(entry('c.pt', [t('b', '2'), t('a', '1')]), src).status, 'IN_SYNC');
    assert.equal(compareWithSource(entry('c.pt', [t('a', '1'), t('b', '2', [2, 32])]), src).status, 'SHAPE_MISMATCH');
    // A dict with a key written twice (the decoder keeps both): the later tensor is the one a lookup finds.
    const dup = entry('src.pt', [t('a', '1'), t('a', '2')]);
    const r = compareWithSource(entry('c.pt', [t('a', '1'), t('a', '2')]), dup);
    assert.equal(r.status, 'DIVERGED');
    assert.equal(r.differing, 1);
  });

  it('relPath gives what path.relative gives, for clean and unclean paths', () => {
    const ref = (root: string, abs: string) => relative(root, abs).split(sep).join('/').normalize('NFC');
    const roots = ['/a/b', '/a/b/', '/', '/a/./b', '/a//b', 'a/b', '/a/b/..', '/a/.b', '/tmp/x'];
    const rests = [
      'c.pt',
      'c/d.pt',
      './c.pt',
      '../c.pt',
      'c//d.pt',
      'c/',
      '.c/d.pt',
      'c/..d.pt',
      'c/../d.pt',
      'e\u0301.pt',
      'ç/ş.pt',
      '',
      '/',
      'c/.',
      'c/..',
    ];
    for (const r of roots)
      for (const x of rests)
        for (const j of ['/', '//', ''])
          assert.equal(relPath(r, r + j + x), ref(r, r + j + x), JSON.stringify([r, r + j + x]));
  });

  it('a short metadata text stands for itself, a long one for its SHA-256: equal exactly when the texts are', async () => {
    const texts = ['["int","1"]', '["str",""]', 'x'.repeat(INLINE_META_TEXT), 'x'.repeat(INLINE_META_TEXT + 1), '8'];
    // a text that is itself 16 hex digits (an adapter_config number) never passes for a long text's digest
    texts.push('1234567890abcdef', createHash('sha256').update('y'.repeat(99)).digest('hex').slice(0, 16));
    const seen = new Map<string, string>();
    for (const t of texts) {
      const d = keyDigestOf(t);
      if (t.length <= INLINE_META_TEXT) assert.equal(d, `=${t}`);
      else assert.equal(d, createHash('sha256').update(t).digest('hex').slice(0, 16));
      assert.equal(seen.get(d), undefined, `${t} and ${seen.get(d)} give the same value`);
      seen.set(d, t);
    }
    assert.notEqual(keyDigestOf('y'.repeat(99)), keyDigestOf(texts[texts.length - 1]));
    // the file's metadata digest: insertion order does not matter, any one value does
    const a = { 'metadata.b': '=2', 'metadata.a': '=1', z: 'ffeeddccbbaa9988' };
    const b = { z: 'ffeeddccbbaa9988', 'metadata.a': '=1', 'metadata.b': '=2' };
    assert.equal(metaDigestOf(a), metaDigestOf(b));
    for (const k of Object.keys(a))
      assert.notEqual(metaDigestOf({ ...a, [k]: `${a[k as keyof typeof a]}0` }), metaDigestOf(a), k);
    // the pairs are read back unambiguously: no split of keys and values gives another set's text
    assert.notEqual(metaDigestOf({ 'a,b': '=1' }), metaDigestOf({ a: '=b,1' }));
    assert.notEqual(metaDigestOf({ a: '1:b', c: '=' }), metaDigestOf({ a: '1', 'b1:c': '=' }));
    assert.notEqual(metaDigestOf({ a: '', b: '' }), metaDigestOf({ a: '1:b0:' }));
    // what the fixture workspace's files hold: every value either a short text or a 64-bit digest
    const dir = await copyFixtureWorkspace('lora-metakeys-');
    try {
      const ws = await Workspace.open(dir);
      await ws.scan();
      let inline = 0;
      let hashed = 0;
      for (const f of (await ws.report()).files) {
        for (const v of Object.values(ws.entry(f.path)?.metaKeys ?? {})) {
          if (v.startsWith('=')) inline++;
          else if (/^[0-9a-f]{16}$/.test(v)) hashed++;
          else assert.fail(`${f.path}: ${v}`);
        }
      }
      assert.ok(inline > 0 && hashed > 0, `${inline} inline, ${hashed} hashed`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  describe('the compact cache', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await copyFixtureWorkspace('lora-cache5-');
    });
    afterEach(() => rm(dir, { recursive: true, force: true }));
    after(() => shutdownEntryPool());

    it('gives back every entry as it was read, with equal parts shared', async () => {
      const cold = await Workspace.open(dir);
      await cold.scan();
      const warm = await Workspace.open(dir);
      const s = await warm.scan();
      assert.equal(s.read, 0);
      const paths = (await cold.report()).files.map((f) => f.path);
      assert.ok(paths.length > 10);
      // (as JSON: a field whose value is undefined is not kept, as before)
      const json = (e: FileEntry | undefined) => JSON.parse(JSON.stringify(e));
      for (const p of paths) assert.deepStrictEqual(json(warm.entry(p)), json(cold.entry(p)), p);
      // in-sync copies hold their source's tensor list: one object once loaded
      const map = warm.copyMap();
      let shared = 0;
      for (const g of map.loras.values()) {
        const src = primarySource(g);
        for (const c of g.copies) {
          if (
            src &&
            c.tensorsDigest === src.tensorsDigest &&
            c.tensors.map((t) => t.name).join() === src.tensors.map((t) => t.name).join()
          ) {
            assert.equal(c.tensors, src.tensors, c.path);
            shared++;
          }
        }
      }
      assert.ok(shared > 0);
    });

    it('real layouts come back as they were too (folder units, side keys, hash issues), each layout and key list written once', async () => {
      const layouts = await copyLayoutsWorkspace('lora-cache-layouts-');
      try {
        const cold = await Workspace.open(layouts);
        await cold.scan();
        const warm = await Workspace.open(layouts);
        const s = await warm.scan();
        assert.equal(s.read, 0);
        const json = (e: FileEntry | undefined) => JSON.parse(JSON.stringify(e));
        const paths = (await cold.report()).files.map((f) => f.path);
        const units = new Set<string>();
        for (const p of paths) {
          assert.deepStrictEqual(json(warm.entry(p)), json(cold.entry(p)), p);
          const u = warm.entry(p)?.unit;
          if (u) units.add(u.path === p ? 'file' : 'folder');
        }
        assert.deepEqual([...units].sort(), ['file', 'folder'], 'both kinds of unit went through the cache');
        const lines = (await readFile(join(layouts, '.lora-sync/index.jsonl'), 'utf8')).split('\n');
        const count = (tag: string) => lines.filter((l) => l.startsWith(`["${tag}"`)).length;
        assert.equal(count('F'), paths.length);
        assert.ok(count('L') < count('F') && count('L') > 1, `${count('L')} layout lines for ${count('F')} files`);
        const keyLists = lines.filter((l) => l.startsWith('["K"'));
        assert.equal(new Set(keyLists).size, keyLists.length, 'each key list once');
      } finally {
        await rm(layouts, { recursive: true, force: true });
      }
    });

    it('writes each tensor list and metadata set once, also when equal ones are other objects (files read by a later update)', async () => {
      const ws = await Workspace.open(dir);
      await ws.scan();
      const map = ws.copyMap();
      // In-sync copies, read again one by one: each update interns apart, so their lists are equal
      // to their source's but other objects, which the writer must find by digest, not identity.
      const pairs: Array<[string, string]> = [];
      for (const g of map.loras.values()) {
        const src = primarySource(g);
        for (const c of g.copies)
          if (src && c.tensorsDigest === src.tensorsDigest && c.metaDigest === src.metaDigest)
            pairs.push([c.path, src.path]);
      }
      assert.ok(pairs.length >= 2, `${pairs.length} in-sync copies`);
      const old = new Date(Date.now() - 3_600_000);
      for (const [copy] of pairs) {
        await utimes(join(dir, copy), old, old);
        await ws.update([copy]);
      }
      for (const [copy, src] of pairs) {
        assert.notEqual(ws.entry(copy)!.tensors, ws.entry(src)!.tensors, `${copy}: read apart`);
        assert.notEqual(ws.entry(copy)!.metaKeys, ws.entry(src)!.metaKeys, `${copy}: read apart`);
        assert.deepStrictEqual(ws.entry(copy)!.tensors, ws.entry(src)!.tensors, copy);
      }
      await ws.flushCache();
      const lines = (await readFile(join(dir, '.lora-sync/index.jsonl'), 'utf8')).split('\n');
      for (const tag of ['T', 'M']) {
        const tagged = lines.filter((l) => l.startsWith(`["${tag}"`));
        assert.equal(new Set(tagged).size, tagged.length, `each ${tag} line once`);
      }
      // ... and read back, each copy shares its source's list and set again.
      const warm = await Workspace.open(dir);
      assert.equal((await warm.scan()).read, 0);
      for (const [copy, src] of pairs) {
        assert.equal(warm.entry(copy)!.tensors, warm.entry(src)!.tensors, copy);
        assert.equal(warm.entry(copy)!.metaKeys, warm.entry(src)!.metaKeys, copy);
      }
    });

    it('tensor lists with the digest of one written but in another order are each written once, and read back in their own order', async () => {
      const ws = await Workspace.open(dir);
      await ws.scan();
      const files = new Map<string, CachedFile>();
      for (const f of (await ws.report()).files) files.set(f.path, { entry: ws.entry(f.path)! });
      // Files whose list another file holds too: they share the digest, not the order.
      const holders = (d: string) => [...files.values()].filter((f) => f.entry.tensorsDigest === d).length;
      const shared = [...files].filter(([, f]) => f.entry.tensors.length > 1 && holders(f.entry.tensorsDigest) > 2);
      const digest = shared[0][1].entry.tensorsDigest;
      const group = shared.filter(([, f]) => f.entry.tensorsDigest === digest);
      assert.ok(group.length >= 3, `${group.length} files hold one list`);
      // The first keeps its order; the others each get the reversed order, as objects of their own.
      for (const [path, cached] of group.slice(1))
        files.set(path, { entry: { ...cached.entry, tensors: [...cached.entry.tensors].reverse() } });
      const cache = new IndexCache(dir, await loadConfig(dir));
      await cache.save(files);
      const lines = (await readFile(cache.path, 'utf8')).split('\n').filter((l) => l.startsWith('["T"'));
      assert.equal(new Set(lines).size, lines.length, 'each T line once');
      // Each order's line, as the writer encodes a list: exactly one each.
      const line = (ts: TensorEntry[]) =>
        `["T",${JSON.stringify(ts.map((t) => [t.name, t.dtype, t.shape, t.digest]))}]`;
      const kept = group[0][1].entry.tensors;
      for (const order of [kept, [...kept].reverse()])
        assert.equal(lines.filter((l) => l === line(order)).length, 1, 'one line for each order');
      const names = (ts: TensorEntry[]) => JSON.stringify(ts.map((t) => t.name));
      const back = (await cache.load()).files;
      assert.equal(back.size, files.size);
      for (const [p, f] of files) assert.equal(names(back.get(p)!.entry.tensors), names(f.entry.tensors), p);
    });

    it('a file line pointing at a layout or a key list that is not there makes the cache damaged', async () => {
      for (const tag of ['L', 'K']) {
        await (await Workspace.open(dir)).scan();
        const p = join(dir, '.lora-sync/index.jsonl');
        const lines = (await readFile(p, 'utf8')).split('\n');
        assert.ok(
          lines.some((l) => l.startsWith(`["${tag}"`)),
          tag,
        );
        await writeFile(p, lines.filter((l) => !l.startsWith(`["${tag}"`)).join('\n'));
        const s = await (await Workspace.open(dir)).scan();
        assert.match(s.cacheNote!, /damaged/, tag);
        assert.equal(s.read, s.files, tag);
      }
    });

    it('a file line whose reference is no whole number, or a layout line that is no object, makes the cache damaged', async () => {
      const edits: Array<(l: string) => string> = [
        (l) => (l.startsWith('["F"') ? JSON.stringify(Object.assign(JSON.parse(l), { 12: 'length' })) : l),
        (l) => (l.startsWith('["L"') ? '["L","seed"]' : l),
      ];
      for (const edit of edits) {
        await (await Workspace.open(dir)).scan();
        const p = join(dir, '.lora-sync/index.jsonl');
        await writeFile(p, (await readFile(p, 'utf8')).split('\n').map(edit).join('\n'));
        const s = await (await Workspace.open(dir)).scan();
        assert.match(s.cacheNote!, /damaged/);
        assert.equal(s.read, s.files);
      }
    });

    it('a file line pointing at a tensor list that is not there makes the cache damaged', async () => {
      await (await Workspace.open(dir)).scan();
      const p = join(dir, '.lora-sync/index.jsonl');
      const lines = (await readFile(p, 'utf8')).split('\n').filter((l) => !l.startsWith('["T"'));
      await writeFile(p, lines.join('\n'));
      const s = await (await Workspace.open(dir)).scan();
      assert.match(s.cacheNote!, /damaged/);
      assert.equal(s.read, s.files);
    });
  });
});
