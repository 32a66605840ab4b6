/**
 * Finds the tensors in a decoded torch pickle: which tree nodes are tensor rebuild calls, which
 * storage each one views, and the dotted path it sits at. Pure: no I/O, nothing executed.
 */
import { FormatError } from '../errors';
import { type PyNode, type PyObject, type PyPersId, type PyGlobal, mappingEntries } from '../pickle/nodes';
import { type TorchDtype, dtypeFromStorageClass } from '../dtypes';

/** What a persistent id `('storage', torch.FloatStorage, '0', 'cpu', 24[, view_metadata])` says. */
export interface StorageId {
  key: string;
  dtype: TorchDtype;
  location: string;
  /** Element count of the whole storage (not bytes). */
  numel: number;
  /** Legacy format only: (view_key, offset, size) of a storage view, in elements. */
  legacyView?: { rootKey: string; offset: number; numel: number };
}

export interface TensorCall {
  /** Dotted path from the root: dict keys, list/tuple indices. */
  path: string;
  node: PyObject;
  storage: StorageId;
  storageOffset: number;
  shape: number[];
  stride: number[];
  requiresGrad: boolean;
  /** Wrapped in `torch._utils._rebuild_parameter` (an nn.Parameter). */
  parameter: boolean;
  /** The `_rebuild_parameter` node around `node`, for parameters: what the tree holds at `path`. */
  wrapper?: PyObject;
}

const TENSOR_REBUILDERS = new Set(['_rebuild_tensor_v2', '_rebuild_tensor']);
const PARAM_REBUILDERS = new Set(['_rebuild_parameter', '_rebuild_parameter_with_state']);

function isTorchUtils(n: PyNode, names: Set<string>): n is PyGlobal {
  return n.kind === 'global' && n.module === 'torch._utils' && names.has(n.name);
}

export function isTensorNode(n: PyNode): boolean {
  return n.kind === 'object' && n.how === 'reduce' && isTorchUtils(n.callable, TENSOR_REBUILDERS);
}
export function isParameterNode(n: PyNode): boolean {
  return n.kind === 'object' && n.how === 'reduce' && isTorchUtils(n.callable, PARAM_REBUILDERS);
}

function argItems(o: PyObject): PyNode[] {
  const a = o.args;
  if (a.kind !== 'tuple') throw new FormatError('BAD_TENSOR', `${describe(o)}: arguments are not a tuple`);
  return a.items;
}

function describe(o: PyObject): string {
  return o.callable.kind === 'global' ? `${o.callable.module}.${o.callable.name}` : 'tensor rebuild';
}

/** `index`, when given, is appended to `what` in errors (spelled only then). */
export function smallInt(n: PyNode | undefined, what: string, index?: number): number {
  if (n?.kind !== 'int') throw new FormatError('BAD_TENSOR', `${intName(what, index)} is not an int`);
  // One conversion, then number compares: a tensor has a dozen of these (shape, stride, offset, size).
  const v = Number(n.value);
  // (a bigint past 2^53 converts to at least 2^53, so the range check still sees it)
  if (v < 0 || v > Number.MAX_SAFE_INTEGER)
    throw new FormatError('BAD_TENSOR', `${intName(what, index)} out of range: ${n.value}`);
  return v;
}

const intName = (what: string, index?: number) => (index === undefined ? what : `${what}[${index}]`);

function intTuple(n: PyNode | undefined, what: string): number[] {
  if (n?.kind !== 'tuple') throw new FormatError('BAD_TENSOR', `${what} is not a tuple`);
  if (n.items.length > 64) throw new FormatError('BAD_TENSOR', `${what} has ${n.items.length} dimensions`);
  const out = new Array<number>(n.items.length);
  for (let i = 0; i < out.length; i++) out[i] = smallInt(n.items[i], what, i);
  return out;
}

/** Reads the persistent id of a storage (zip: 5-tuple; legacy: 6-tuple with view metadata). */
export function storageIdOf(p: PyPersId): StorageId {
  const pid = p.pid;
  if (pid.kind !== 'tuple' || pid.items.length < 5)
    throw new FormatError('BAD_TENSOR', 'persistent id is not a storage tuple');
  const [tag, cls, key, location, numel, view] = pid.items;
  if (tag.kind !== 'str' || tag.value !== 'storage')
    throw new FormatError('BAD_TENSOR', `persistent id tag is not 'storage'`);
  if (cls.kind !== 'global' || cls.module !== 'torch')
    throw new FormatError('BAD_TENSOR', 'storage type is not a torch storage class');
  const dtype = dtypeFromStorageClass(cls.name);
  if (!dtype) throw new FormatError('BAD_TENSOR', `unsupported storage type torch.${cls.name}`);
  if (key.kind !== 'str') throw new FormatError('BAD_TENSOR', 'storage key is not a string');
  if (location.kind !== 'str') throw new FormatError('BAD_TENSOR', 'storage location is not a string');
  const id: StorageId = { key: key.value, dtype, location: location.value, numel: smallInt(numel, 'storage size') };
  if (view && view.kind === 'tuple' && view.items.length === 3) {
    const [vk, off, size] = view.items;
    if (vk.kind !== 'str') throw new FormatError('BAD_TENSOR', 'storage view key is not a string');
    id.legacyView = {
      rootKey: vk.value,
      offset: smallInt(off, 'storage view offset'),
      numel: smallInt(size, 'storage view size'),
    };
  } else if (view && view.kind !== 'none') {
    throw new FormatError('BAD_TENSOR', 'storage view metadata is not a 3-tuple');
  }
  return id;
}

function tensorCall(o: PyObject, path: string, parameter: boolean, requiresGradOverride?: boolean): TensorCall {
  const args = argItems(o);
  if (args.length < 4)
    throw new FormatError('BAD_TENSOR', `${describe(o)} at ${path || '<root>'} has ${args.length} arguments`);
  const st = args[0];
  if (st.kind !== 'persid')
    throw new FormatError('BAD_TENSOR', `tensor at ${path || '<root>'}: storage is not a persistent id`);
  const storage = storageIdOf(st);
  const storageOffset = smallInt(args[1], 'storage offset');
  const shape = intTuple(args[2], 'size');
  const stride = intTuple(args[3], 'stride');
  if (shape.length !== stride.length)
    throw new FormatError('BAD_TENSOR', `tensor at ${path}: size and stride differ in length`);
  const rg = args[4];
  const requiresGrad = requiresGradOverride ?? (rg !== undefined && rg.kind === 'bool' && rg.value);
  // The view must lie inside its storage: the last element it can touch is offset + sum((d-1)*s).
  let extent = storageOffset;
  let empty = false;
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 0) empty = true;
    else extent += (shape[i] - 1) * stride[i];
  }
  const avail = storage.legacyView ? storage.legacyView.numel : storage.numel;
  if (!empty && extent >= avail) {
    throw new FormatError(
      'BAD_TENSOR',
      `tensor at ${path || '<root>'} reaches element ${extent} of a storage of ${avail}`,
    );
  }
  return { path, node: o, storage, storageOffset, shape, stride, requiresGrad, parameter };
}

function segment(k: PyNode): string {
  switch (k.kind) {
    case 'str':
      return k.value;
    case 'int':
      return k.value.toString();
    case 'bool':
      return k.value ? 'True' : 'False';
    case 'none':
      return 'None';
    case 'float':
      return String(k.value);
    default:
      return `<${k.kind}>`;
  }
}

const join = (base: string, seg: string) => (base === '' ? seg : `${base}.${seg}`);

/** A node waiting to be visited, with where it sits; its dotted path is spelled only if a tensor is found there. */
interface Frame {
  n: PyNode;
  parent: Frame | undefined;
  /** A dict key node, a list/tuple index, or a literal segment ('$state', '$set3'...). */
  key: PyNode | number | string;
  path?: string;
}

function pathOf(f: Frame): string {
  if (f.path !== undefined) return f.path;
  if (!f.parent) return (f.path = '');
  const k = f.key;
  const seg = typeof k === 'string' ? k : typeof k === 'number' ? String(k) : segment(k);
  return (f.path = join(pathOf(f.parent), seg));
}

/** Only containers can hold tensors (a tensor is an object node); leaves are never visited. */
function mayHoldTensors(n: PyNode): boolean {
  switch (n.kind) {
    case 'dict':
    case 'list':
    case 'tuple':
    case 'set':
    case 'object':
      return true;
    default:
      return false;
  }
}

/**
 * A storage the tree names outside any plain tensor: a quantized tensor (`_rebuild_qtensor`), a
 * `_rebuild_tensor_v3` (torch 2.x dtypes with no typed storage), a storage saved on its own. Its
 * bytes are data the model has no place for: nothing could compare it, and a copy written from the
 * tensors found would lack its record (torch.load: "failed locating file data/N").
 */
export interface StrayStorage {
  /** Dotted path of the call holding it (or of the storage itself, when no call holds it). */
  path: string;
  key: string;
  /** The call it is an argument of (`torch._utils._rebuild_qtensor`), when it is one. */
  heldBy?: string;
  /** The storage class its persistent id names (`QInt8Storage`): a legacy file's storage length needs it. */
  storageClass?: string;
}

/** A child worth visiting (one that can hold a tensor), with where it sits. A function of its own, not a closure per node. */
function addKid(kids: Frame[], v: PyNode, parent: Frame, key: Frame['key'], strays?: StrayStorage[]): void {
  if (mayHoldTensors(v)) kids.push({ n: v, parent, key });
  // A tensor's own persistent id is never reached here: a tensor node is not walked into.
  else if (v.kind === 'persid' && strays) addStray(strays, strayOf(v, { n: v, parent, key }));
}

/** One entry per storage key: a storage the memo shares is named once. */
function addStray(strays: StrayStorage[], s: StrayStorage): void {
  if (!strays.some((x) => x.key === s.key)) strays.push(s);
}

function strayOf(p: PyPersId, at: Frame): StrayStorage {
  const pid = p.pid;
  const k = pid.kind === 'tuple' ? pid.items[2] : undefined;
  const cls = pid.kind === 'tuple' ? pid.items[1] : undefined;
  const base = {
    key: k?.kind === 'str' ? k.value : '?',
    ...(cls?.kind === 'global' ? { storageClass: cls.name } : {}),
  };
  // Held by a call only as one of its arguments: a storage inside an OrderedDict is not "held by" it.
  const args = at.parent;
  const call = args?.key === '$args' ? args.parent?.n : undefined;
  if (call?.kind === 'object' && call.callable.kind === 'global')
    return { path: pathOf(args!.parent!), ...base, heldBy: `${call.callable.module}.${call.callable.name}` };
  return { path: pathOf(at), ...base };
}

/** Why a file with stray storages is left alone, in a few words (the first one named). */
export function strayStoragesWhy(strays: readonly StrayStorage[]): string {
  const s = strays[0];
  const more = strays.length > 1 ? ` and ${strays.length - 1} more` : '';
  return `holds tensor data LoRA Sync cannot compare or copy: ${s.heldBy ?? 'a bare storage'} at ${s.path || '<root>'}${more}`;
}

/**
 * Walks the tree depth first in pickle order and returns every tensor once (a tensor reached
 * twice through the memo keeps its first path). Iterative, so depth is bounded by the decoder's limit
 * only. `strays`, when given, gets every storage named outside a plain tensor (StrayStorage).
 */
export function findTensors(root: PyNode, strays?: StrayStorage[]): TensorCall[] {
  const out: TensorCall[] = [];
  const seen = new Set<PyNode>();
  const stack: Frame[] = [{ n: root, parent: undefined, key: '' }];
  if (root.kind === 'persid' && strays) addStray(strays, strayOf(root, stack.pop()!));
  const kids: Frame[] = [];
  while (stack.length) {
    const f = stack.pop()!;
    const n = f.n;
    if (seen.has(n)) continue;
    seen.add(n);
    if (n.kind === 'object' && isParameterNode(n)) {
      const path = pathOf(f);
      const args = argItems(n);
      const inner = args[0];
      if (inner?.kind !== 'object' || !isTensorNode(inner))
        throw new FormatError('BAD_TENSOR', `parameter at ${path} does not wrap a tensor`);
      const rg = args[1];
      seen.add(inner);
      out.push({ ...tensorCall(inner, path, true, rg?.kind === 'bool' ? rg.value : false), wrapper: n });
      continue;
    }
    if (n.kind === 'object' && isTensorNode(n)) {
      out.push(tensorCall(n, pathOf(f), false));
      continue;
    }
    // Children pushed in reverse so they pop in pickle order.
    kids.length = 0;
    const entries = mappingEntries(n);
    if (entries) {
      for (const [k, v] of entries) addKid(kids, v, f, k, strays);
      if (n.kind === 'object' && n.state) addKid(kids, n.state, f, '$state', strays);
    } else if (n.kind === 'list' || n.kind === 'tuple') {
      for (let i = 0; i < n.items.length; i++) addKid(kids, n.items[i], f, i, strays);
    } else if (n.kind === 'set') {
      for (let i = 0; i < n.items.length; i++) addKid(kids, n.items[i], f, `$set${i}`, strays);
    } else if (n.kind === 'object') {
      addKid(kids, n.args, f, '$args', strays);
      n.appends?.forEach((v, i) => addKid(kids, v, f, i, strays));
      n.setitems?.forEach(([k, v]) => addKid(kids, v, f, k, strays));
      if (n.state) addKid(kids, n.state, f, '$state', strays);
      n.extraStates?.forEach((v, i) => addKid(kids, v, f, `$state${i + 1}`, strays));
    }
    for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]);
  }
  return out;
}

/** True when a view with this shape/stride reads a gap-free run of elements in C order. */
export function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === 1) continue;
    if (shape[i] === 0) return true;
    if (stride[i] !== expected) return false;
    expected *= shape[i];
  }
  return true;
}
