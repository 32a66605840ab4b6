/**
 * A torch state dict holding a safetensors file's tensors: what a `.bin` / `.pt` copy of a safetensors
 * source becomes (PEFT's `adapter_model.bin` deployed beside an `adapter_model.safetensors` source,
 * `save_pretrained(safe_serialization=False)`). The tree is what `torch.save(OrderedDict)` writes for
 * contiguous CPU tensors: `_rebuild_tensor_v2` over one storage per tensor, nothing but the allowlist's
 * globals, so the copy loads with `torch.load(weights_only=True)`. The bytes are streamed from the
 * source's data section, never buffered whole.
 */
import type { Checkpoint } from '../formats/checkpoint';
import { storageClassOf } from '../formats/dtypes';
import * as N from '../formats/pickle/nodes';
import type { PyNode } from '../formats/pickle/nodes';
import type { ZipSource } from '../formats/zip/zipWriter';

export function stateDictOfSafetensors(src: Checkpoint): { root: PyNode; storages: Map<string, ZipSource> } {
  if (src.format !== 'safetensors') throw new Error(`${src.path} is not safetensors`);
  // One global node each, shared as Python's memo shares them.
  const rebuild = N.global('torch._utils', '_rebuild_tensor_v2');
  const ordered = N.global('collections', 'OrderedDict');
  const classes = new Map<string, PyNode>();
  const storages = new Map<string, ZipSource>();
  const items: Array<[PyNode, PyNode]> = [];
  for (const t of src.tensors) {
    const key = String(storages.size);
    storages.set(key, { kind: 'range', fh: src.fh, offset: t.storage.offset, length: t.byteLength });
    const cls = storageClassOf(t.dtype);
    let clsNode = classes.get(cls);
    if (!clsNode) classes.set(cls, (clsNode = N.global('torch', cls)));
    const numel = t.shape.reduce((a, b) => a * b, 1);
    // safetensors tensors are dense and row-major: the stride follows from the shape.
    const stride = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
    const pid: N.PyPersId = {
      kind: 'persid',
      binary: true,
      pid: N.tuple([N.str('storage'), clsNode, N.str(key), N.str('cpu'), N.int(numel)]),
    };
    const hooks: N.PyObject = { kind: 'object', how: 'reduce', callable: ordered, args: N.tuple([]) };
    const tensor: N.PyObject = {
      kind: 'object',
      how: 'reduce',
      callable: rebuild,
      args: N.tuple([
        pid,
        N.int(0),
        N.tuple(t.shape.map((d) => N.int(d))),
        N.tuple(stride.map((d) => N.int(d))),
        N.bool(false),
        hooks,
      ]),
    };
    items.push([N.str(t.path), tensor]);
  }
  const root: N.PyObject = { kind: 'object', how: 'reduce', callable: ordered, args: N.tuple([]), setitems: items };
  return { root, storages };
}
