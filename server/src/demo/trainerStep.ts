/**
 * What a trainer does to a checkpoint after a match, for demos, tests and benchmarks: one tensor's
 * values move, and optionally `metadata.sync_info.last_sync_match` is set. Written atomically with the
 * project's own writer, the tensors and everything else kept as they were.
 */
import { withCheckpoint } from '../formats/checkpoint';
import { readTensorBytes } from '../formats/fingerprint';
import * as N from '../formats/pickle/nodes';
import { getKey } from '../formats/pickle/nodes';
import { writeTorchCheckpoint, storageSourcesOf, torchPrefixFor } from '../formats/torch/ptWriter';
import { atomicWrite } from '../io/atomicWrite';

export async function trainerStep(path: string, opts: { match?: number; tensor?: string } = {}): Promise<void> {
  await withCheckpoint(path, async (c) => {
    const t = opts.tensor
      ? c.tensors.find((x) => x.path === opts.tensor || x.path === `lora_params.${opts.tensor}`)
      : c.tensors[0];
    if (t?.dtype !== 'float32') throw new Error(`${path}: no float32 tensor ${opts.tensor ?? ''}`);
    const data = Buffer.from(await readTensorBytes(c, t));
    for (let i = 0; i < data.length; i += 4) data.writeFloatLE(data.readFloatLE(i) * 0.5 + 0.01, i);
    const storages = storageSourcesOf(c);
    storages.set(t.storage.key, { kind: 'buffer', data });
    if (opts.match !== undefined) {
      const info = getKey(getKey(c.root!, 'metadata') ?? N.none(), 'sync_info');
      if (info && info.kind === 'dict') {
        const i = info.entries.findIndex(([k]) => k.kind === 'str' && k.value === 'last_sync_match');
        if (i >= 0) info.entries[i] = [info.entries[i][0], N.int(opts.match)];
        else info.entries.push([N.str('last_sync_match'), N.int(opts.match)]);
      }
    }
    await atomicWrite(path, (fh) =>
      writeTorchCheckpoint(fh, { prefix: torchPrefixFor(path), root: c.root!, storages }),
    );
  });
}
