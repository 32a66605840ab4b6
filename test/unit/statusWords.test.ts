/**
 * A copy against its source, on entries made by hand (the rules are pure): the words a structural
 * change gets, and a folder unit whose source has no adapter_config.json. Both came from a probe
 * with layouts we had not made ("stale: 16 of 8 tensors differ"; a copy rewritten at every sync).
 */
import { strict as assert } from 'node:assert';
import { compareWithSource, describeStatus } from '../../server/src/engine/statusRules';
import type { FileEntry } from '../../server/src/engine/loraFile';
import { DIGEST_ALG } from '../../server/src/formats/fingerprint';

const tensor = (name: string, digest = 'd') => ({ name, dtype: 'float32', shape: [4, 4], digest });
function entry(path: string, names: string[], extra: Partial<FileEntry> = {}): FileEntry {
  return {
    path,
    kind: 'lora',
    tensors: names.map((n) => tensor(n)),
    tensorsDigest: `t:${names.join(',')}`,
    metaDigest: 'm',
    metaKeys: {},
    copyKeys: [],
    unsafeGlobals: [],
    syncInfo: {},
    ...extra,
  } as FileEntry;
}

describe('status words (statusRules.ts, entries by hand)', () => {
  it('a source retrained with other tensor names: counts of every tensor, and which side has which', () => {
    const src = entry('train/a.safetensors', ['x.1', 'x.2', 'y.1']);
    const copy = entry('deploy/a.safetensors', ['x.1', 'z.1', 'z.2', 'z.3']);
    // Our record says the copy is what we wrote: the source moved on.
    copy.syncInfo = { engine: { tensors: copy.tensorsDigest, alg: DIGEST_ALG } };
    const s = compareWithSource(copy, src);
    assert.equal(s.status, 'STALE');
    assert.equal(s.total, 6, 'the source’s 3 and the copy’s own 3');
    assert.equal(
      describeStatus(copy, s, src),
      'stale: 5 of 6 tensors differ from train/a.safetensors (2 only in the source, 3 only in this copy)',
    );
    // Same names: the sentence users know, unchanged.
    const same = entry('deploy/b.safetensors', ['x.1', 'x.2', 'y.1'], {
      tensors: ['x.1', 'x.2', 'y.1'].map((n) => tensor(n, 'e')),
    });
    same.syncInfo = { engine: { tensors: same.tensorsDigest, alg: DIGEST_ALG } };
    assert.equal(
      describeStatus(same, compareWithSource(same, src), src),
      'stale: 3 of 3 tensors differ from train/a.safetensors',
    );
  });

  it("a source without adapter_config.json: the copy's config is its own, not drift", () => {
    const src = entry('train/p/adapter_model.safetensors', ['x'], { metaKeys: { 'metadata.a': '1' }, metaDigest: 's' });
    const copy = entry('deploy/p/adapter_model.safetensors', ['x'], {
      metaKeys: { 'metadata.a': '1', 'adapter_config.r': '8' },
      metaDigest: 'c',
    });
    assert.equal(compareWithSource(copy, src).status, 'IN_SYNC');
    // With a config at the source, the copy's differs: drift, as before.
    const withConfig = { ...src, configDigest: 'cfg', metaKeys: { ...src.metaKeys, 'adapter_config.r': '16' } };
    const s = compareWithSource(copy, withConfig);
    assert.equal(s.status, 'METADATA_DRIFT');
    assert.deepEqual(
      s.issues.map((i) => i.param),
      ['adapter_config.r'],
    );
  });
});
