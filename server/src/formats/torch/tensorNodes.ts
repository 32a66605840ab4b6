/**
 * The pickle nodes `torch.save` writes for a contiguous CPU tensor: `_rebuild_tensor_v2` over a
 * storage persistent id `('storage', <Dtype>Storage, key, 'cpu', numel)`, with an empty OrderedDict of
 * backward hooks. Only globals torch's weights-only unpickler allows. The globals and strings are
 * shared between tensors as Python's memo shares them (one object, many references).
 */
import { type TorchDtype, storageClassOf } from '../dtypes';
import * as N from '../pickle/nodes';
import type { PyNode } from '../pickle/nodes';

export class TensorNodes {
  private readonly rebuild = N.global('torch._utils', '_rebuild_tensor_v2');
  readonly orderedDict = N.global('collections', 'OrderedDict');
  private readonly storageTag = N.str('storage');
  private readonly cpu = N.str('cpu');
  private readonly storageClasses = new Map<string, PyNode>();

  /** A tensor of `shape` over the whole storage `key`, row-major. */
  tensor(dtype: TorchDtype, shape: number[], key: string): PyNode {
    const cls = storageClassOf(dtype);
    let clsNode = this.storageClasses.get(cls);
    if (!clsNode) this.storageClasses.set(cls, (clsNode = N.global('torch', cls)));
    const numel = shape.reduce((a, b) => a * b, 1);
    const stride = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
    const pid: N.PyPersId = {
      kind: 'persid',
      binary: true,
      pid: N.tuple([this.storageTag, clsNode, N.str(key), this.cpu, N.int(numel)]),
    };
    return {
      kind: 'object',
      how: 'reduce',
      callable: this.rebuild,
      args: N.tuple([
        pid,
        N.int(0),
        N.tuple(shape.map((d) => N.int(d))),
        N.tuple(stride.map((d) => N.int(d))),
        N.bool(false),
        this.ordered([]),
      ]),
    };
  }

  /** `OrderedDict(items)`, as torch.save writes a state dict. */
  ordered(items: Array<[PyNode, PyNode]>): N.PyObject {
    const o: N.PyObject = { kind: 'object', how: 'reduce', callable: this.orderedDict, args: N.tuple([]) };
    if (items.length) o.setitems = items;
    return o;
  }
}
