/**
 * Pickle encoder, protocol 2, reproducing CPython 3.11's C `_pickle.Pickler(f, protocol=2)` byte
 * for byte, so that decode -> encode of a file torch.save wrote gives the same bytes.
 *
 * Memo: a node decoded from a file says whether it was memoized (`memo: true|false`); a node built
 * by code (`memo` undefined) follows Python's policy: str, bytes, bytearray, set, list, dict,
 * non-empty tuple, global and object are memoized; None, bool, int, float, empty tuple and persid
 * are not. A node met again after being memoized becomes a BINGET. Python memoizes by object
 * identity, and so do we, with two emulations for code-built nodes where CPython's identity is
 * certain: one object per global name (a class or function is a singleton) and one object per
 * empty/one-byte `bytes` (CPython caches those). Equal code-built str nodes are not merged:
 * CPython's own sharing of short strings depends on how they were created.
 *
 * Protocol 2 has no opcode for some kinds, so they are written the way CPython writes them:
 * - bytes     -> `_codecs.encode(latin1_str, 'latin1')` REDUCE; empty -> `__builtin__.bytes()`.
 * - bytearray -> `__builtin__.bytearray(bytes)` REDUCE; empty -> `__builtin__.bytearray()`.
 * - set       -> `__builtin__.set([items])` REDUCE (frozenset likewise).
 * - object how='newobj_ex' -> `copyreg.__newobj_ex__(cls, args, kwargs)` REDUCE (CPython itself
 *   writes a functools.partial here; both rebuild the same object on load).
 * - object how='inst'/'obj' -> callable, args, REDUCE (the protocol-2 spelling of the same call).
 * - persid -> pid, BINPERSID (also for a PERSID-decoded node).
 * Batches follow CPython's C pickler: a plain list or dict of one item uses APPEND/SETITEM; larger
 * ones use MARK..APPENDS/SETITEMS of up to 1000, and a dict whose size is a multiple of 1000 gets
 * a trailing empty MARK SETITEMS (as `batch_dict_exact` does). An object's appends/setitems are
 * written like CPython's iterator batching: a final lone item uses APPEND/SETITEM.
 *
 * Known limits: NaN payloads are written as JS holds them (canonical NaN); a str whose surrogate
 * pair Python held as two separate surrogates re-encodes as one 4-byte character.
 * A tree that cannot be written (a cycle not broken by a memoized node, nesting over 1000 like
 * Python's recursion limit, a global name containing '\n') throws FormatError.
 */
import { FormatError } from '../errors';
import type { PyBytes, PyGlobal, PyNode, PyObject, PySet, PyStr, PyTuple } from './nodes';
import { BATCH_SIZE as BATCH_SIZE_IMPORTED, OP as OP_IMPORTED } from './opcodes';
import { ByteWriter, encodeLong } from './pickleOutput';

export { encodeLong } from './pickleOutput';

// Module-level copies: an imported binding may compile to a getter call on every access.
const OP = OP_IMPORTED;
const BATCH_SIZE = BATCH_SIZE_IMPORTED;

export interface EncodePickleOptions {
  /** Only protocol 2 (torch.save's data.pkl) is written. */
  protocol?: 2;
}

export function encodePickle(root: PyNode, opts?: EncodePickleOptions): Buffer {
  if (opts?.protocol !== undefined && opts.protocol !== 2) {
    throw new FormatError('PICKLE_LIMIT', `pickle: cannot write protocol ${String(opts.protocol)}, only 2`);
  }
  const enc = new PickleEncoder();
  enc.out.byte(OP.PROTO);
  enc.out.byte(2);
  enc.save(root);
  enc.out.byte(OP.STOP);
  return enc.out.result();
}

/** Python's recursion limit, which bounds what CPython could have pickled in the first place. */
const MAX_DEPTH = 1000;

class PickleEncoder {
  readonly out = new ByteWriter();
  private readonly memo = new Map<PyNode, number>();
  private nextMemo = 0;
  private depth = 0;
  /** Memo index of the first memoized global / small bytes by value (CPython identity emulation). */
  private readonly globalByName = new Map<string, number>();
  private readonly smallBytes = new Map<string, number>();
  /** CPython's interned 'latin1' used by every protocol-2 bytes reduction. */
  private readonly latin1Name: PyStr = { kind: 'str', value: 'latin1' };

  save(node: PyNode): void {
    const index = this.memo.get(node);
    if (index !== undefined) {
      this.get(index);
      return;
    }
    if (node.memo === undefined) {
      const shared = this.sharedIndex(node);
      if (shared !== undefined) {
        this.get(shared);
        return;
      }
    }
    if (++this.depth > MAX_DEPTH) {
      throw new FormatError('PICKLE_LIMIT', `pickle: cannot write a tree nested deeper than ${MAX_DEPTH} (or cyclic)`);
    }
    const out = this.out;
    switch (node.kind) {
      case 'none':
        out.byte(OP.NONE);
        this.memoize(node);
        break;
      case 'bool':
        out.byte(node.value ? OP.NEWTRUE : OP.NEWFALSE);
        this.memoize(node);
        break;
      case 'int':
        this.writeInt(node.value);
        this.memoize(node);
        break;
      case 'float':
        out.byte(OP.BINFLOAT);
        out.f64be(node.value);
        this.memoize(node);
        break;
      case 'str':
        out.byte(OP.BINUNICODE);
        out.utf8WithLength(node.value);
        this.memoize(node);
        break;
      case 'global':
        this.writeGlobal(node);
        this.memoize(node);
        break;
      case 'bytes':
        this.writeBytes(node);
        break;
      case 'tuple':
        this.writeTuple(node);
        break;
      case 'list':
        out.byte(OP.EMPTY_LIST);
        this.memoize(node);
        this.batchExactList(node.items);
        break;
      case 'dict':
        out.byte(OP.EMPTY_DICT);
        this.memoize(node);
        this.batchExactDict(node.entries);
        break;
      case 'set':
        this.writeSet(node);
        break;
      case 'object':
        this.writeObject(node);
        break;
      case 'persid':
        this.save(node.pid);
        out.byte(OP.BINPERSID);
        this.memoize(node);
        break;
    }
    this.depth--;
  }

  // ---- memo ----

  private memoize(node: PyNode): void {
    if (!shouldMemoize(node)) return;
    const index = this.putAnonymous();
    this.memo.set(node, index);
    // Later code-built nodes of equal value are "the same object" in CPython: remember the first.
    const slot = this.sharedSlot(node);
    if (slot !== undefined && !slot[0].has(slot[1])) slot[0].set(slot[1], index);
  }

  /** BINPUT for an object nobody can refer to again (e.g. the args tuple CPython builds itself). */
  private putAnonymous(): number {
    const index = this.nextMemo++;
    if (index < 256) {
      this.out.byte(OP.BINPUT);
      this.out.byte(index);
    } else {
      this.out.byte(OP.LONG_BINPUT);
      this.out.u32le(index);
    }
    return index;
  }

  private get(index: number): void {
    if (index < 256) {
      this.out.byte(OP.BINGET);
      this.out.byte(index);
    } else {
      this.out.byte(OP.LONG_BINGET);
      this.out.u32le(index);
    }
  }

  private sharedIndex(node: PyNode): number | undefined {
    const slot = this.sharedSlot(node);
    return slot ? slot[0].get(slot[1]) : undefined;
  }

  /** The by-value identity table a node belongs to, if CPython shares equal values of its kind. */
  private sharedSlot(node: PyNode): [Map<string, number>, string] | undefined {
    switch (node.kind) {
      case 'global':
        return [this.globalByName, `${node.module}\n${node.name}`];
      case 'bytes':
        return !node.bytearray && node.value.length <= 1 ? [this.smallBytes, String(node.value[0] ?? '')] : undefined;
      default:
        return undefined;
    }
  }

  // ---- scalars ----

  private writeInt(v: bigint): void {
    const out = this.out;
    if (v >= 0n && v <= 0xffn) {
      out.byte(OP.BININT1);
      out.byte(Number(v));
      return;
    }
    if (v >= 0n && v <= 0xffffn) {
      out.byte(OP.BININT2);
      out.u16le(Number(v));
      return;
    }
    if (v >= -0x8000_0000n && v <= 0x7fff_ffffn) {
      out.byte(OP.BININT);
      out.i32le(Number(v));
      return;
    }
    const bytes = encodeLong(v);
    if (bytes.length < 256) {
      out.byte(OP.LONG1);
      out.byte(bytes.length);
    } else {
      out.byte(OP.LONG4);
      out.i32le(bytes.length);
    }
    out.bytes(bytes);
  }

  private writeGlobal(node: PyGlobal): void {
    if (node.module.includes('\n') || node.name.includes('\n')) {
      throw new FormatError(
        'PICKLE_STACK',
        `pickle: global name ${JSON.stringify(`${node.module}.${node.name}`)} cannot be written (newline)`,
      );
    }
    this.out.byte(OP.GLOBAL);
    this.out.utf8(`${node.module}\n${node.name}\n`);
  }

  /** A global CPython's pickler refers to on its own (e.g. `_codecs encode`), shared by name. */
  private saveBuiltin(module: string, name: string): void {
    this.save({ kind: 'global', module, name });
  }

  // ---- kinds protocol 2 writes as a REDUCE ----

  private writeBytes(node: PyBytes): void {
    const out = this.out;
    if (node.bytearray) {
      this.saveBuiltin('__builtin__', 'bytearray');
      if (node.value.length === 0) {
        out.byte(OP.EMPTY_TUPLE);
      } else {
        this.save({ kind: 'bytes', value: node.value });
        out.byte(OP.TUPLE1);
        this.putAnonymous();
      }
    } else if (node.value.length === 0) {
      this.saveBuiltin('__builtin__', 'bytes');
      out.byte(OP.EMPTY_TUPLE);
    } else {
      this.saveBuiltin('_codecs', 'encode');
      this.save({
        kind: 'str',
        value: Buffer.from(node.value.buffer, node.value.byteOffset, node.value.byteLength).toString('latin1'),
      });
      this.save(this.latin1Name);
      out.byte(OP.TUPLE2);
      this.putAnonymous();
    }
    out.byte(OP.REDUCE);
    this.memoize(node);
  }

  private writeSet(node: PySet): void {
    this.saveBuiltin('__builtin__', node.frozen ? 'frozenset' : 'set');
    this.out.byte(OP.EMPTY_LIST);
    this.putAnonymous();
    this.batchExactList(node.items);
    this.out.byte(OP.TUPLE1);
    this.putAnonymous();
    this.out.byte(OP.REDUCE);
    this.memoize(node);
  }

  // ---- containers ----

  private writeTuple(node: PyTuple): void {
    const out = this.out;
    const n = node.items.length;
    if (n === 0) {
      out.byte(OP.EMPTY_TUPLE);
      this.memoize(node);
      return;
    }
    if (n <= 3) {
      for (const item of node.items) this.save(item);
      // CPython: if the tuple got memoized while saving its items, it is recursive -> POP and GET.
      const again = this.memo.get(node);
      if (again !== undefined) {
        for (let i = 0; i < n; i++) out.byte(OP.POP);
        this.get(again);
        return;
      }
      out.byte(n === 1 ? OP.TUPLE1 : n === 2 ? OP.TUPLE2 : OP.TUPLE3);
    } else {
      out.byte(OP.MARK);
      for (const item of node.items) this.save(item);
      const again = this.memo.get(node);
      if (again !== undefined) {
        out.byte(OP.POP_MARK);
        this.get(again);
        return;
      }
      out.byte(OP.TUPLE);
    }
    this.memoize(node);
  }

  private writeObject(node: PyObject): void {
    const out = this.out;
    switch (node.how) {
      case 'newobj':
        this.save(node.callable);
        this.save(node.args);
        out.byte(OP.NEWOBJ);
        break;
      case 'newobj_ex':
        this.saveBuiltin('copyreg', '__newobj_ex__');
        this.save(node.callable);
        this.save(node.args);
        this.save(node.kwargs ?? { kind: 'dict', entries: [] });
        out.byte(OP.TUPLE3);
        this.putAnonymous();
        out.byte(OP.REDUCE);
        break;
      default: // reduce, inst, obj: all a call of callable(*args)
        this.save(node.callable);
        this.save(node.args);
        out.byte(OP.REDUCE);
    }
    this.memoize(node);
    if (node.appends) this.batchIterAppends(node.appends);
    if (node.setitems) this.batchIterSetitems(node.setitems);
    if (node.state !== undefined) {
      this.save(node.state);
      out.byte(OP.BUILD);
    }
    for (const extra of node.extraStates ?? []) {
      this.save(extra);
      out.byte(OP.BUILD);
    }
  }

  /** CPython batch_list_exact: one item -> APPEND; else MARK..APPENDS batches, no empty batch. */
  private batchExactList(items: PyNode[]): void {
    const out = this.out;
    if (items.length === 0) return;
    if (items.length === 1) {
      this.save(items[0]);
      out.byte(OP.APPEND);
      return;
    }
    for (let start = 0; start < items.length; start += BATCH_SIZE) {
      out.byte(OP.MARK);
      const end = Math.min(items.length, start + BATCH_SIZE);
      for (let i = start; i < end; i++) this.save(items[i]);
      out.byte(OP.APPENDS);
    }
  }

  /** CPython batch_dict_exact: one item -> SETITEM; else batches, repeated while the last one was full. */
  private batchExactDict(entries: Array<[PyNode, PyNode]>): void {
    const out = this.out;
    if (entries.length === 0) return;
    if (entries.length === 1) {
      this.save(entries[0][0]);
      this.save(entries[0][1]);
      out.byte(OP.SETITEM);
      return;
    }
    let start = 0;
    let batch: number;
    do {
      out.byte(OP.MARK);
      const end = Math.min(entries.length, start + BATCH_SIZE);
      for (let i = start; i < end; i++) {
        this.save(entries[i][0]);
        this.save(entries[i][1]);
      }
      batch = end - start;
      start = end;
      out.byte(OP.SETITEMS);
    } while (batch === BATCH_SIZE);
  }

  /** CPython batch_list (iterator): batches of up to 1000; a lone remaining item -> APPEND. */
  private batchIterAppends(items: PyNode[]): void {
    const out = this.out;
    for (let start = 0; start < items.length; start += BATCH_SIZE) {
      if (items.length - start === 1) {
        this.save(items[start]);
        out.byte(OP.APPEND);
        return;
      }
      out.byte(OP.MARK);
      const end = Math.min(items.length, start + BATCH_SIZE);
      for (let i = start; i < end; i++) this.save(items[i]);
      out.byte(OP.APPENDS);
    }
  }

  /** CPython batch_dict (iterator): batches of up to 1000; a lone remaining pair -> SETITEM. */
  private batchIterSetitems(entries: Array<[PyNode, PyNode]>): void {
    const out = this.out;
    for (let start = 0; start < entries.length; start += BATCH_SIZE) {
      if (entries.length - start === 1) {
        this.save(entries[start][0]);
        this.save(entries[start][1]);
        out.byte(OP.SETITEM);
        return;
      }
      out.byte(OP.MARK);
      const end = Math.min(entries.length, start + BATCH_SIZE);
      for (let i = start; i < end; i++) {
        this.save(entries[i][0]);
        this.save(entries[i][1]);
      }
      out.byte(OP.SETITEMS);
    }
  }
}

/** Python's memo policy for a node, or the node's own record of it. */
function shouldMemoize(node: PyNode): boolean {
  if (node.memo !== undefined) return node.memo;
  switch (node.kind) {
    case 'str':
    case 'bytes':
    case 'list':
    case 'dict':
    case 'set':
    case 'global':
    case 'object':
      return true;
    case 'tuple':
      return node.items.length > 0;
    default:
      return false;
  }
}
