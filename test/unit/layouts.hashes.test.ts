import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readSafetensorsFile, writeSafetensors } from '../../server/src/formats/safetensors';
import {
  checkEmbeddedHashes,
  EMPTY_SHA256,
  embeddedHashesFor,
  embeddedHashReport,
  fileDataReader,
  hashFile,
  kohyaLegacyHash,
  LEGACY_OFFSET,
  savedHeaderLength,
  spansOf,
  type TensorSpan,
} from '../../server/src/layouts/ecosystemHashes';
import { cachedFileHashes } from '../../server/src/engine/fileHashes';
import { walk } from '../support/files';
import { LAYOUTS } from '../support/layoutFixtures';

const PYTHON = '/usr/bin/python3';

/** Writes a safetensors file with our writer: `data` is the data section the spans point into. */
async function writeWith(path: string, spans: TensorSpan[], data: Uint8Array, meta: Record<string, string>) {
  const out = await open(path, 'w');
  try {
    await writeSafetensors(
      out,
      spans.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: data.subarray(t.begin, t.end) })),
      meta,
    );
  } finally {
    await out.close();
  }
}

/** The same hashes by Python's hashlib, written from the definitions, over the same files. */
const PY_HASHES = String.raw`
import hashlib, json, os, struct, sys
root = sys.argv[1]
out = {}
for rel in sys.argv[2:]:
    blob = open(os.path.join(root, rel), 'rb').read()
    e = {'sha256': hashlib.sha256(blob).hexdigest(),
         'legacy': hashlib.sha256(blob[0x100000:0x110000]).hexdigest()[:8]}
    if rel.endswith('.safetensors') and blob[8:9] == b'{':
        n = struct.unpack('<Q', blob[:8])[0]
        e['data'] = hashlib.sha256(blob[8 + n:]).hexdigest()
    out[rel] = e
print(json.dumps(out))
`;

describe('layouts: ecosystem hashes', function () {
  this.timeout(60_000);
  let files: string[];
  let tmp: string;
  before(async () => {
    files = (await walk(LAYOUTS)).filter((f) => /\.(safetensors|pt|pth|bin|ckpt)$/.test(f)).sort();
    tmp = await mkdtemp(join(tmpdir(), 'lora-layout-hashes-'));
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  it('AutoV2, AutoV3 and the legacy hash of every fixture equal Python hashlib over the same bytes', async function () {
    if (!existsSync(PYTHON)) this.skip();
    const py = JSON.parse(execFileSync(PYTHON, ['-c', PY_HASHES, LAYOUTS, ...files], { encoding: 'utf8' }));
    let safetensors = 0;
    for (const rel of files) {
      const h = await hashFile(join(LAYOUTS, rel));
      const want = py[rel];
      assert.equal(h.sha256, want.sha256, rel);
      assert.equal(h.autoV2, want.sha256.slice(0, 10), rel);
      assert.equal(h.legacy, want.legacy, rel);
      // the LFS pointer is text named .safetensors: Python's sniff and ours must agree it has no data section
      assert.equal(h.safetensors?.dataSha256, want.data, rel);
      if (want.data) {
        safetensors++;
        assert.equal(h.safetensors?.autoV3, want.data.slice(0, 12), rel);
      }
    }
    assert.ok(safetensors >= 15, `${safetensors} safetensors files checked`);
  });

  it('the legacy window: complete in the 1.1 MiB file, empty (the empty-input hash) in small ones', async () => {
    const big = await hashFile(join(LAYOUTS, 'train/kohya/big_style.safetensors'));
    assert.ok(big.size > LEGACY_OFFSET + 0x10000);
    assert.equal(big.legacyWindowBytes, 0x10000);
    assert.notEqual(big.legacy, EMPTY_SHA256.slice(0, 8));
    const small = await hashFile(join(LAYOUTS, 'train/kohya/pixel_style.safetensors'));
    assert.equal(small.legacyWindowBytes, 0);
    assert.equal(small.legacy, EMPTY_SHA256.slice(0, 8));
  });

  it('a file cut inside the legacy window hashes the bytes it has, as A1111 does', async () => {
    const p = join(tmp, 'cut.bin');
    const bytes = (await readFile(join(LAYOUTS, 'train/kohya/big_style.safetensors'))).subarray(
      0,
      LEGACY_OFFSET + 1000,
    );
    await writeFile(p, bytes);
    const h = await hashFile(p);
    assert.equal(h.legacyWindowBytes, 1000);
    assert.equal(h.legacy, createHash('sha256').update(bytes.subarray(LEGACY_OFFSET)).digest('hex').slice(0, 8));
    // the data hash is over the bytes after the header that are there (a reader reports the truncation)
    const dataStart = 8 + Number(bytes.readBigUInt64LE(0));
    assert.equal(h.safetensors?.dataSha256, createHash('sha256').update(bytes.subarray(dataStart)).digest('hex'));
  });
});

describe('layouts: embedded hashes (sshs_model_hash, sshs_legacy_hash, modelspec.hash_sha256)', function () {
  this.timeout(60_000);
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'lora-layout-embedded-'));
  });
  after(() => rm(tmp, { recursive: true, force: true }));

  it('files kohya-style hashes were computed for have no mismatch (incl. the legacy hash of the 1.2 MiB file)', async () => {
    for (const rel of [
      'train/kohya/pixel_style-000008.safetensors',
      'train/kohya/pixel_style.safetensors',
      'train/kohya/big_style.safetensors',
      'ComfyUI/models/loras/pixel_style_v2.safetensors',
      'train/kohya_run2/pixel_style.safetensors',
    ]) {
      const { issues } = await embeddedHashReport(join(LAYOUTS, rel));
      assert.deepEqual(issues, [], rel);
    }
  });

  it("kohya's legacy hash is over an ss_*-only re-serialisation, not the file itself", async () => {
    const p = join(LAYOUTS, 'train/kohya/big_style.safetensors');
    const st = await readSafetensorsFile(p);
    const fh = await open(p, 'r');
    try {
      const legacy = await kohyaLegacyHash(
        st.metadata!,
        spansOf(st.tensors, st.dataStart),
        fileDataReader(fh, st.dataStart),
      );
      assert.deepEqual(legacy, { value: st.metadata!.sshs_legacy_hash });
      // the file's own legacy hash differs: its header also holds sshs_* and modelspec.* keys
      assert.notEqual((await hashFile(p)).legacy, st.metadata!.sshs_legacy_hash);
      // the ss_*-only header is shorter than the file's
      assert.ok(savedHeaderLength({}, st.tensors) < st.headerSize);
    } finally {
      await fh.close();
    }
  });

  it('wrong values are reported, the empty-input hash by name', async () => {
    const { issues } = await embeddedHashReport(join(LAYOUTS, 'ComfyUI/models/loras/pixel_style_badhash.safetensors'));
    assert.deepEqual(
      issues.map((i) => [i.type, i.key]),
      [
        ['EMBEDDED_HASH_MISMATCH', 'sshs_model_hash'],
        ['EMBEDDED_HASH_MISMATCH', 'sshs_legacy_hash'],
        ['EMBEDDED_HASH_MISMATCH', 'modelspec.hash_sha256'],
      ],
    );
    assert.match(issues[0].detail, /SHA-256 of empty input \(e3b0c442…\)/);
    assert.equal(
      issues[1].actual,
      EMPTY_SHA256.slice(0, 8),
      'below 1 MiB the right legacy hash is the empty-input one',
    );
    assert.match(issues[2].actual, /^0x[0-9a-f]{64}$/);
  });

  it('a user metadata edit keeps kohya hashes right; a changed tensor byte or ss_* key does not', async () => {
    const src = join(LAYOUTS, 'train/kohya/big_style.safetensors');
    const st = await readSafetensorsFile(src);
    const md = { ...st.metadata! };
    const rewrite = async (name: string, meta: Record<string, string>, flip?: number) => {
      const p = join(tmp, name);
      const bytes = Buffer.from((await readFile(src)).subarray(st.dataStart));
      if (flip !== undefined) bytes[flip] ^= 0xff;
      await writeWith(p, spansOf(st.tensors, st.dataStart), bytes, meta);
      return (await embeddedHashReport(p)).issues.map((i) => i.key);
    };
    assert.deepEqual(await rewrite('notes.safetensors', { ...md, 'modelspec.description': 'my notes', note: 'x' }), []);
    // a byte inside the legacy window of the ss_*-only serialisation
    const window =
      LEGACY_OFFSET -
      8 -
      savedHeaderLength(Object.fromEntries(Object.entries(md).filter(([k]) => k.startsWith('ss_'))), st.tensors);
    assert.deepEqual(await rewrite('flip.safetensors', md, window + 10), [
      'sshs_model_hash',
      'sshs_legacy_hash',
      'modelspec.hash_sha256',
    ]);
    // a byte outside it
    assert.deepEqual(await rewrite('flip2.safetensors', md, 5), ['sshs_model_hash', 'modelspec.hash_sha256']);
    // a longer ss_* value shifts kohya's window: only the legacy hash changes
    assert.deepEqual(await rewrite('ss.safetensors', { ...md, ss_output_name: 'big_style_renamed_to_be_longer' }), [
      'sshs_legacy_hash',
    ]);
  });

  it('the values a writer must embed make the written copy check clean', async () => {
    const src = join(LAYOUTS, 'ComfyUI/models/loras/pixel_style_badhash.safetensors');
    for (const big of [false, true]) {
      const from = big ? join(LAYOUTS, 'train/kohya/big_style.safetensors') : src;
      const st = await readSafetensorsFile(from);
      const data = (await readFile(from)).subarray(st.dataStart);
      const md = { ...st.metadata!, sshs_model_hash: EMPTY_SHA256, sshs_legacy_hash: '0', 'modelspec.hash_sha256': '' };
      const spans = spansOf(st.tensors, st.dataStart);
      const { values, cannot } = await embeddedHashesFor(md, {
        tensors: spans,
        sha256: createHash('sha256').update(data).digest('hex'),
        read: async (o, n) => data.subarray(o, o + n),
      });
      assert.deepEqual(cannot, []);
      assert.deepEqual(Object.keys(values).sort(), ['modelspec.hash_sha256', 'sshs_legacy_hash', 'sshs_model_hash']);
      const p = join(tmp, `fixed-${big}.safetensors`);
      await writeWith(p, spans, data, { ...md, ...values });
      assert.deepEqual((await embeddedHashReport(p)).issues, [], `big=${big}`);
    }
    // keys the metadata lacks are not added
    const none = await embeddedHashesFor(
      { ss_output_name: 'x' },
      { tensors: [], sha256: EMPTY_SHA256, read: async () => new Uint8Array() },
    );
    assert.deepEqual(none, { values: {}, cannot: [] });
  });

  it('a copy written in another tensor order: the legacy hash follows kohya save order, the model hash the bytes', async () => {
    const from = join(LAYOUTS, 'train/kohya/big_style.safetensors');
    const st = await readSafetensorsFile(from);
    const data = (await readFile(from)).subarray(st.dataStart);
    let off = 0;
    const parts: Uint8Array[] = [];
    const spans = spansOf(st.tensors, st.dataStart)
      .reverse()
      .map((t) => {
        parts.push(data.subarray(t.begin, t.end));
        const s = { ...t, begin: off, end: off + (t.end - t.begin) };
        off = s.end;
        return s;
      });
    const reordered = Buffer.concat(parts);
    const { values } = await embeddedHashesFor(st.metadata!, {
      tensors: spans,
      sha256: createHash('sha256').update(reordered).digest('hex'),
      read: async (o, n) => reordered.subarray(o, o + n),
    });
    assert.equal(values.sshs_legacy_hash, st.metadata!.sshs_legacy_hash, 'same tensors and ss_* keys');
    assert.notEqual(values.sshs_model_hash, st.metadata!.sshs_model_hash, 'other data bytes');
    const p = join(tmp, 'reordered.safetensors');
    await writeWith(p, spans, reordered, { ...st.metadata!, ...values });
    assert.deepEqual((await embeddedHashReport(p)).issues, []);
  });

  it('says when the legacy hash cannot be computed (the ss_* header reaches the window)', async () => {
    const huge = { ss_tag_frequency: 'x'.repeat(LEGACY_OFFSET + 10), sshs_legacy_hash: 'abc' };
    const r = await embeddedHashesFor(huge, {
      tensors: [{ name: 'a', dtype: 'F32', shape: [1], begin: 0, end: 4 }],
      sha256: EMPTY_SHA256,
      read: async () => new Uint8Array(4),
    });
    assert.deepEqual(
      r.cannot.map((c) => c.key),
      ['sshs_legacy_hash'],
    );
  });

  it('checkEmbeddedHashes: prefixes, 0x, case and empty values', () => {
    const data = 'ab'.repeat(32);
    assert.deepEqual(
      checkEmbeddedHashes({ sshs_model_hash: data.slice(0, 12).toUpperCase() }, { dataSha256: data }),
      [],
    );
    assert.deepEqual(checkEmbeddedHashes({ 'modelspec.hash_sha256': `0x${data}` }, { dataSha256: data }), []);
    assert.deepEqual(checkEmbeddedHashes({ 'modelspec.hash_sha256': '' }, { dataSha256: data }), []);
    assert.deepEqual(
      checkEmbeddedHashes({ sshs_legacy_hash: 'deadbeef' }, { dataSha256: data }),
      [],
      'not computable: no claim checked',
    );
    assert.equal(
      checkEmbeddedHashes({ sshs_model_hash: 'abab' }, { dataSha256: data }).length,
      1,
      'too short to be a claim',
    );
    assert.equal(checkEmbeddedHashes({ sshs_model_hash: 'not a hash' }, { dataSha256: data }).length, 1);
    assert.equal(checkEmbeddedHashes({ sshs_model_hash: EMPTY_SHA256 }, { dataSha256: EMPTY_SHA256 }).length, 0);
    assert.deepEqual(checkEmbeddedHashes(null, { dataSha256: data }), []);
  });

  it('torch files have AutoV2 and legacy hashes, no data hash and no embedded check', async () => {
    const p = join(tmp, 'copy.pt');
    await copyFile(join(LAYOUTS, 'plain/my_lora.pth'), p);
    const r = await embeddedHashReport(p);
    assert.equal(r.hashes.safetensors, undefined);
    assert.deepEqual(r.issues, []);
  });
});

describe('layouts: the hashes the tree and the inspector ask for (cachedFileHashes)', function () {
  this.timeout(30_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lora-hash-cache-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('are computed once per file version, and again when the file changes', async () => {
    const f = join(dir, 'pixel_style.safetensors');
    await copyFile(join(LAYOUTS, 'train/kohya/pixel_style.safetensors'), f);
    const first = await cachedFileHashes(f);
    assert.equal(
      first.sha256,
      createHash('sha256')
        .update(await readFile(f))
        .digest('hex'),
    );
    assert.equal(await cachedFileHashes(f), first, 'the same object: remembered, not recomputed');
    // Another version of the file (other bytes, other size): its own hashes.
    await copyFile(join(LAYOUTS, 'train/kohya/pixel_style-000008.safetensors'), f);
    const second = await cachedFileHashes(f);
    assert.notEqual(second.sha256, first.sha256);
    assert.equal(
      second.sha256,
      createHash('sha256')
        .update(await readFile(f))
        .digest('hex'),
    );
  });
});
