/**
 * The lossless tree a pickle decodes into. Nothing here is ever executed: a GLOBAL is a name,
 * a REDUCE is a record of "this callable was applied to these args".
 *
 * Identity matters: when the pickle refers to one object twice (memo GET), the decoder returns
 * the *same* JS node object both times, and the encoder turns the second visit back into a GET.
 * `memo` records whether the writer memoized the node (BINPUT), so a decode/encode round trip of a
 * file written by Python reproduces the same bytes.
 */
export type PyNode =
  | PyNone
  | PyBool
  | PyInt
  | PyFloat
  | PyStr
  | PyBytes
  | PyList
  | PyTuple
  | PyDict
  | PySet
  | PyGlobal
  | PyObject
  | PyPersId;

interface Base {
  /** True when the pickle memoized this node right after creating it (PUT/BINPUT/MEMOIZE). */
  memo?: boolean;
}

export interface PyNone extends Base {
  kind: 'none';
}
export interface PyBool extends Base {
  kind: 'bool';
  value: boolean;
}
/** Python int of any size. Always a bigint so that 2**70 and -2**40 survive. */
export interface PyInt extends Base {
  kind: 'int';
  value: bigint;
}
export interface PyFloat extends Base {
  kind: 'float';
  value: number;
}
export interface PyStr extends Base {
  kind: 'str';
  value: string;
}
/** `bytes` (BINBYTES/SHORT_BINBYTES/BINBYTES8) or `bytearray` (BYTEARRAY8). Protocol 2 writes bytes as a REDUCE of `_codecs.encode` instead: see PyObject. */
export interface PyBytes extends Base {
  kind: 'bytes';
  value: Uint8Array;
  bytearray?: boolean;
}
export interface PyList extends Base {
  kind: 'list';
  items: PyNode[];
}
export interface PyTuple extends Base {
  kind: 'tuple';
  items: PyNode[];
}
export interface PyDict extends Base {
  kind: 'dict';
  entries: Array<[PyNode, PyNode]>;
}
/** Protocol 4 EMPTY_SET/ADDITEMS and FROZENSET. Protocol 2 writes sets as a REDUCE of `__builtin__.set`. */
export interface PySet extends Base {
  kind: 'set';
  items: PyNode[];
  frozen: boolean;
}
export interface PyGlobal extends Base {
  kind: 'global';
  module: string;
  name: string;
}

/**
 * An object built by calling something: REDUCE (callable(*args)), NEWOBJ (cls.__new__(cls, *args)),
 * NEWOBJ_EX (with kwargs), INST/OBJ (protocol 0/1). After creation the pickle may fill it:
 * APPEND(S) -> `appends`, SETITEM(S) -> `setitems`, BUILD -> `state` (in the order Python's pickler
 * writes them: appends, setitems, state).
 */
export interface PyObject extends Base {
  kind: 'object';
  how: 'reduce' | 'newobj' | 'newobj_ex' | 'inst' | 'obj';
  /** The callable or class (usually a PyGlobal, but any node is allowed). */
  callable: PyNode;
  /** The argument tuple (REDUCE, NEWOBJ, NEWOBJ_EX) or the argument list (INST, OBJ) as a tuple node. */
  args: PyTuple | PyNode;
  /** NEWOBJ_EX only. */
  kwargs?: PyNode;
  appends?: PyNode[];
  setitems?: Array<[PyNode, PyNode]>;
  /** BUILD argument. A second BUILD on the same object is kept in `extraStates`. */
  state?: PyNode;
  extraStates?: PyNode[];
}

/** The result of persistent_load(pid) (PERSID / BINPERSID). torch uses it for storages. */
export interface PyPersId extends Base {
  kind: 'persid';
  pid: PyNode;
  binary: boolean;
}

// ---- small constructors and accessors used across the code base ----

export const none = (): PyNone => ({ kind: 'none' });
export const bool = (value: boolean): PyBool => ({ kind: 'bool', value });
export const int = (value: bigint | number): PyInt => ({ kind: 'int', value: BigInt(value) });
export const float = (value: number): PyFloat => ({ kind: 'float', value });
export const str = (value: string): PyStr => ({ kind: 'str', value });
export const list = (items: PyNode[]): PyList => ({ kind: 'list', items });
export const tuple = (items: PyNode[]): PyTuple => ({ kind: 'tuple', items });
export const dict = (entries: Array<[PyNode, PyNode]>): PyDict => ({ kind: 'dict', entries });
export const global = (module: string, name: string): PyGlobal => ({ kind: 'global', module, name });

export function isGlobal(n: PyNode | undefined, module: string, name: string): n is PyGlobal {
  return !!n && n.kind === 'global' && n.module === module && n.name === name;
}

/** Entries of a dict-like node: a plain dict, or an object filled by SETITEMS (e.g. OrderedDict). */
export function mappingEntries(n: PyNode): Array<[PyNode, PyNode]> | undefined {
  if (n.kind === 'dict') return n.entries;
  if (n.kind === 'object' && isGlobal(n.callable, 'collections', 'OrderedDict')) return n.setitems ?? [];
  return undefined;
}

/** Look a string key up in a dict-like node. */
export function getKey(n: PyNode, key: string): PyNode | undefined {
  const entries = mappingEntries(n);
  if (!entries) return undefined;
  for (const [k, v] of entries) if (k.kind === 'str' && k.value === key) return v;
  return undefined;
}
