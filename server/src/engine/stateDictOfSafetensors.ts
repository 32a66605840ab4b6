/**
 * A torch state dict holding a safetensors file's tensors: what a `.bin` / `.pt` copy of a safetensors
 * source becomes (PEFT's `adapter_model.bin` deployed beside an `adapter_model.safetensors` source,
 * `save_pretrained(safe_serialization=False)`). The tree is what `torch.save(OrderedDict)` writes for
 * contiguous CPU tensors: `_rebuild_tensor_v2` over one storage per tensor, nothing but the allowlist's
 * globals, so the copy loads with `torch.load(weights_only=True)`. The bytes are streamed from the
 * source's data section, never buffered whole.
 */
import type { Checkpoint } from '../formats/checkpoint';
import * as N from '../formats/pickle/nodes';
import type { PyNode } from '../formats/pickle/nodes';
import { TensorNodes } from '../formats/torch/tensorNodes';
import type { ZipSource } from '../formats/zip/zipWriter';

export function stateDictOfSafetensors(src: Checkpoint): { root: PyNode; storages: Map<string, ZipSource> } {
  if (src.format !== 'safetensors') throw new Error(`${src.path} is not safetensors`);
  const nodes = new TensorNodes();
  const storages = new Map<string, ZipSource>();
  const items: Array<[PyNode, PyNode]> = [];
  for (const t of src.tensors) {
    const key = String(storages.size);
    storages.set(key, { kind: 'range', fh: src.fh, offset: t.storage.offset, length: t.byteLength });
    // safetensors tensors are dense and row-major: the stride follows from the shape.
    items.push([N.str(t.path), nodes.tensor(t.dtype, t.shape, key)]);
  }
  return { root: nodes.ordered(items), storages };
}
