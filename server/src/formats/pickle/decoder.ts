/**
 * Pickle decoder (protocols 0–5) into the inert tree of nodes.ts. Nothing is ever imported or called:
 * GLOBAL is a name, REDUCE/NEWOBJ/INST/OBJ are records of a call, BUILD/APPEND/SETITEM on such a
 * record are kept as fields of the record.
 *
 * The input is untrusted. Every declared length is checked against the remaining input before
 * anything is allocated, every count against PickleLimits, and after STOP an iterative post-pass
 * rejects cycles, trees deeper than maxDepth and trees whose memo-expanded size exceeds maxNodes
 * ("billion laughs"), so that consumers may walk the result recursively.
 *
 * Choices worth knowing:
 * - Every decoded node carries `memo: true|false` (never undefined), so that the encoder reproduces
 *   exactly the BINPUTs of the original file, even one written without a memo (Pickler.fast).
 * - BUILD is accepted only on a PyObject (that is all Python's picklers produce); on any other
 *   node it is PICKLE_STACK. Likewise APPEND(S) needs a list or object, SETITEM(S) a dict or
 *   object, ADDITEMS a (non-frozen) set.
 * - Python 2 STRING/BINSTRING/SHORT_BINSTRING (py2 `str`) decode to PyStr via latin-1, like
 *   `pickle.loads(..., encoding='latin1')` does.
 * - EXT1/2/4 (copyreg extension registry) and NEXT_BUFFER/READONLY_BUFFER (out-of-band buffers)
 *   are rejected with PICKLE_BAD_OPCODE: there is no registry and no buffer list to draw from.
 * - A malformed operand (bad digits in a text INT, invalid UTF-8, unquoted STRING, negative
 *   length, protocol > 5) is also PICKLE_BAD_OPCODE: the opcode cannot be executed as written.
 * - Dict entries are kept as written, duplicate keys included (the tree is lossless; Python would
 *   keep the last value).
 */
import { FormatError, type FormatErrorCode } from '../errors';
import { type PickleLimits, resolveLimits } from './limits';
import { describeOpcode, HIGHEST_PROTOCOL, OPCODE_PROTOCOL } from './opcodes';
import type { PyGlobal, PyNode, PyObject, PyPersId, PyStr, PyTuple } from './nodes';

export interface DecodedPickle {
  root: PyNode;
  /** The PROTO operand, or (no PROTO) the highest protocol of the opcodes used: 0 or 1. */
  protocol: number;
  /** Every distinct (module, name) referenced by GLOBAL, STACK_GLOBAL or INST, first-seen order. */
  globals: PyGlobal[];
  /** Nodes created while decoding (shared nodes count once; popped ones count too). */
  nodeCount: number;
  /** Offset just after STOP. A torch legacy file has more pickles after it. */
  end: number;
}

export function decodePickle(buf: Uint8Array, opts?: Partial<PickleLimits>): DecodedPickle {
  return new PickleDecoder(buf, resolveLimits(opts)).run();
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
/** Module-level copy: an imported binding may compile to a getter call on every access. */
const OPCODE_PROTO: Uint8Array = OPCODE_PROTOCOL;
/** BININT1 values, created once (a bigint is a heap object). */
const SMALL_INTS: bigint[] = Array.from({ length: 256 }, (_, i) => BigInt(i));

class PickleDecoder {
  private pos = 0;
  private readonly view: DataView;
  /** The same bytes as a Buffer (no copy), for fast latin-1 slicing. */
  private readonly nb: Buffer;
  private readonly stack: PyNode[] = [];
  /** Stack heights at each open MARK; `base` is the innermost one (values below it are out of reach). */
  private readonly marks: number[] = [];
  private base = 0;
  /** Memo by index. Python writes dense indices from 0; a sparse hostile index just makes the array sparse. */
  private readonly memo: PyNode[] = [];
  private memoSize = 0;
  /** Nodes pushed twice by DUP: like memoized nodes, they may be reached twice (see checkTree). */
  private readonly duplicated = new Set<PyNode>();
  /**
   * Whether a container was ever pushed a second time (GET, DUP), and how many extra references to
   * leaves were: without the former there can be no cycle and no blow-up (see run, STOP).
   */
  private sharedContainer = false;
  private leafRefs = 0;
  private readonly globals: PyGlobal[] = [];
  private readonly globalKeys = new Set<string>();
  private nodeCount = 0;
  private protocol = -1;
  private inferredProtocol = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly limits: PickleLimits,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.nb = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  run(): DecodedPickle {
    const buf = this.buf;
    const len = buf.length;
    const stack = this.stack;
    const maxStack = this.limits.maxStack;
    for (;;) {
      if (this.pos >= len) throw this.fail('PICKLE_TRUNCATED', this.pos, 'pickle ends without STOP');
      const at = this.pos;
      const op = buf[this.pos++];
      const opProto = OPCODE_PROTO[op];
      if (opProto > this.inferredProtocol) this.inferredProtocol = opProto;
      switch (op) {
        // ---- stack manipulation ----
        case 0x28: // MARK
          if (this.marks.length >= this.limits.maxMarks)
            throw this.fail('PICKLE_LIMIT', at, `more than ${this.limits.maxMarks} open MARKs`);
          this.marks.push(stack.length);
          this.base = stack.length;
          break;
        case 0x2e: {
          // STOP
          const root = this.pop(at);
          const end = this.pos;
          // Without a container referenced twice the tree is a tree: no cycle, at most nodeCount +
          // leafRefs nodes, no deeper than nodeCount. The post-pass is needed only beyond that.
          const l = this.limits;
          if (this.sharedContainer || this.nodeCount + this.leafRefs >= l.maxNodes || this.nodeCount >= l.maxDepth) {
            checkTree(root, l, end, this.duplicated);
          }
          return {
            root,
            protocol: this.protocol >= 0 ? this.protocol : this.inferredProtocol,
            globals: this.globals,
            nodeCount: this.nodeCount,
            end,
          };
        }
        case 0x30: // POP: like CPython, an empty frame above a MARK pops the MARK
          if (stack.length > this.base) stack.pop();
          else if (this.marks.length > 0) this.popMark(at);
          else throw this.fail('PICKLE_STACK', at, 'stack underflow');
          break;
        case 0x31: // POP_MARK
          this.popMark(at);
          break;
        case 0x32: {
          // DUP
          const node = this.top(at);
          this.duplicated.add(node);
          this.noteShared(node);
          stack.push(node);
          break;
        }

        // ---- numbers and constants ----
        case 0x4e:
          this.push({ kind: 'none', memo: false }, at);
          break; // NONE
        case 0x88:
          this.push({ kind: 'bool', value: true, memo: false }, at);
          break; // NEWTRUE
        case 0x89:
          this.push({ kind: 'bool', value: false, memo: false }, at);
          break; // NEWFALSE
        case 0x4b: // BININT1
          this.need(1, at);
          this.pushInt(SMALL_INTS[buf[this.pos++]], at);
          break;
        case 0x4d: // BININT2
          this.need(2, at);
          this.pushInt(BigInt(this.view.getUint16(this.pos, true)), at);
          this.pos += 2;
          break;
        case 0x4a: // BININT
          this.need(4, at);
          this.pushInt(BigInt(this.view.getInt32(this.pos, true)), at);
          this.pos += 4;
          break;
        case 0x8a: {
          // LONG1
          this.need(1, at);
          const n = buf[this.pos++];
          this.pushInt(this.readLong(n, at), at);
          break;
        }
        case 0x8b: {
          // LONG4
          this.need(4, at);
          const n = this.view.getInt32(this.pos, true);
          this.pos += 4;
          if (n < 0) throw this.fail('PICKLE_BAD_OPCODE', at, `negative byte count ${n}`);
          this.pushInt(this.readLong(n, at), at);
          break;
        }
        case 0x49: {
          // INT: text; '00'/'01' are protocol 0's False/True
          const [s, e] = this.readLine(at);
          if (e - s === 2 && buf[s] === 0x30 && (buf[s + 1] === 0x30 || buf[s + 1] === 0x31)) {
            this.push({ kind: 'bool', value: buf[s + 1] === 0x31, memo: false }, at);
          } else {
            this.pushInt(this.parseTextInt(s, e, at), at);
          }
          break;
        }
        case 0x4c: {
          // LONG: text with an optional trailing 'L'
          const [s, e0] = this.readLine(at);
          const e = e0 > s && buf[e0 - 1] === 0x4c ? e0 - 1 : e0;
          this.pushInt(this.parseTextInt(s, e, at), at);
          break;
        }
        case 0x47: // BINFLOAT: 8-byte big-endian double
          this.need(8, at);
          this.push({ kind: 'float', value: this.view.getFloat64(this.pos, false), memo: false }, at);
          this.pos += 8;
          break;
        case 0x46: {
          // FLOAT: text (repr of a float)
          const [s, e] = this.readLine(at);
          this.push({ kind: 'float', value: this.parseTextFloat(s, e, at), memo: false }, at);
          break;
        }

        // ---- strings and bytes ----
        case 0x58: {
          // BINUNICODE
          this.need(4, at);
          const n = this.view.getUint32(this.pos, true);
          this.pos += 4;
          this.pushStr(this.readUtf8(n, at), at);
          break;
        }
        case 0x8c: {
          // SHORT_BINUNICODE
          this.need(1, at);
          const n = buf[this.pos++];
          this.pushStr(this.readUtf8(n, at), at);
          break;
        }
        case 0x8d: // BINUNICODE8
          this.pushStr(this.readUtf8(this.readU64(at), at), at);
          break;
        case 0x56: {
          // UNICODE: raw-unicode-escape text line
          const [s, e] = this.readLine(at);
          this.pushStr(this.rawUnicodeEscape(s, e, at), at);
          break;
        }
        case 0x53: {
          // STRING: py2 str repr, quoted and escaped; latin-1 (see header)
          const [s, e] = this.readLine(at);
          const q = buf[s];
          if (e - s < 2 || (q !== 0x27 && q !== 0x22) || buf[e - 1] !== q) {
            throw this.fail('PICKLE_BAD_OPCODE', at, 'the STRING operand must be quoted');
          }
          this.pushStr(this.escapeDecode(s + 1, e - 1, at), at);
          break;
        }
        case 0x54: {
          // BINSTRING: py2 str, latin-1
          this.need(4, at);
          const n = this.view.getInt32(this.pos, true);
          this.pos += 4;
          if (n < 0) throw this.fail('PICKLE_BAD_OPCODE', at, `negative byte count ${n}`);
          const s = this.take(n, at);
          this.pushStr(this.latin1(s, s + n), at);
          break;
        }
        case 0x55: {
          // SHORT_BINSTRING: py2 str, latin-1
          this.need(1, at);
          const n = buf[this.pos++];
          const s = this.take(n, at);
          this.pushStr(this.latin1(s, s + n), at);
          break;
        }
        case 0x42: {
          // BINBYTES
          this.need(4, at);
          const n = this.view.getUint32(this.pos, true);
          this.pos += 4;
          this.pushBytes(n, false, at);
          break;
        }
        case 0x43: {
          // SHORT_BINBYTES
          this.need(1, at);
          this.pushBytes(buf[this.pos++], false, at);
          break;
        }
        case 0x8e: // BINBYTES8
          this.pushBytes(this.readU64(at), false, at);
          break;
        case 0x96: // BYTEARRAY8
          this.pushBytes(this.readU64(at), true, at);
          break;
        case 0x97: // NEXT_BUFFER
        case 0x98: // READONLY_BUFFER
          throw this.fail('PICKLE_BAD_OPCODE', at, 'out-of-band buffers are not supported');

        // ---- containers ----
        case 0x5d:
          this.push({ kind: 'list', items: [], memo: false }, at);
          break; // EMPTY_LIST
        case 0x6c:
          this.push({ kind: 'list', items: this.popMark(at), memo: false }, at);
          break; // LIST
        case 0x61: {
          // APPEND
          const value = this.pop(at);
          const target = this.top(at);
          if (target.kind === 'list') target.items.push(value);
          else if (target.kind === 'object') (target.appends ??= []).push(value);
          else throw this.fail('PICKLE_STACK', at, `cannot append to a ${target.kind}`);
          break;
        }
        case 0x65: {
          // APPENDS
          const items = this.popMark(at);
          const target = this.top(at);
          let into: PyNode[];
          if (target.kind === 'list') into = target.items;
          else if (target.kind === 'object') into = target.appends ??= [];
          else throw this.fail('PICKLE_STACK', at, `cannot append to a ${target.kind}`);
          for (let i = 0; i < items.length; i++) into.push(items[i]);
          break;
        }
        case 0x29:
          this.push(this.tuple([], at), at);
          break; // EMPTY_TUPLE
        case 0x74:
          this.push(this.tuple(this.popMark(at), at), at);
          break; // TUPLE
        case 0x85:
          this.push(this.tuple(this.popN(1, at), at), at);
          break; // TUPLE1
        case 0x86:
          this.push(this.tuple(this.popN(2, at), at), at);
          break; // TUPLE2
        case 0x87:
          this.push(this.tuple(this.popN(3, at), at), at);
          break; // TUPLE3
        case 0x7d:
          this.push({ kind: 'dict', entries: [], memo: false }, at);
          break; // EMPTY_DICT
        case 0x64: {
          // DICT
          const items = this.popMark(at);
          const entries: Array<[PyNode, PyNode]> = [];
          this.pairsInto(items, entries, at);
          this.push({ kind: 'dict', entries, memo: false }, at);
          break;
        }
        case 0x73: {
          // SETITEM
          const value = this.pop(at);
          const key = this.pop(at);
          this.setItemsTarget(at).push([key, value]);
          break;
        }
        case 0x75: {
          // SETITEMS
          const items = this.popMark(at);
          this.pairsInto(items, this.setItemsTarget(at), at);
          break;
        }
        case 0x8f:
          this.push({ kind: 'set', items: [], frozen: false, memo: false }, at);
          break; // EMPTY_SET
        case 0x90: {
          // ADDITEMS
          const items = this.popMark(at);
          const target = this.top(at);
          if (target.kind !== 'set' || target.frozen)
            throw this.fail('PICKLE_STACK', at, `cannot add items to a ${target.kind}`);
          for (let i = 0; i < items.length; i++) target.items.push(items[i]);
          break;
        }
        case 0x91:
          this.push({ kind: 'set', items: this.popMark(at), frozen: true, memo: false }, at);
          break; // FROZENSET

        // ---- memo ----
        case 0x71: // BINPUT
          this.need(1, at);
          this.put(buf[this.pos++], at);
          break;
        case 0x72: // LONG_BINPUT
          this.need(4, at);
          this.put(this.view.getUint32(this.pos, true), at);
          this.pos += 4;
          break;
        case 0x70: // PUT
          this.put(this.readTextIndex(at), at);
          break;
        case 0x94: // MEMOIZE
          this.put(this.memoSize, at);
          break;
        case 0x68: // BINGET
          this.need(1, at);
          this.get(buf[this.pos++], at);
          break;
        case 0x6a: // LONG_BINGET
          this.need(4, at);
          this.get(this.view.getUint32(this.pos, true), at);
          this.pos += 4;
          break;
        case 0x67: // GET
          this.get(this.readTextIndex(at), at);
          break;

        // ---- names and calls (recorded, never performed) ----
        case 0x63: {
          // GLOBAL
          const module = this.readLineUtf8(at);
          const name = this.readLineUtf8(at);
          this.push(this.global(module, name, at), at);
          break;
        }
        case 0x93: {
          // STACK_GLOBAL
          const name = this.pop(at);
          const module = this.pop(at);
          if (module.kind !== 'str' || name.kind !== 'str') {
            throw this.fail('PICKLE_STACK', at, `STACK_GLOBAL needs two str, got ${module.kind} and ${name.kind}`);
          }
          this.push(this.global(module.value, name.value, at), at);
          break;
        }
        case 0x52: {
          // REDUCE
          const args = this.pop(at);
          const callable = this.pop(at);
          this.push(this.object('reduce', callable, args, at), at);
          break;
        }
        case 0x81: {
          // NEWOBJ
          const args = this.pop(at);
          const cls = this.pop(at);
          this.push(this.object('newobj', cls, args, at), at);
          break;
        }
        case 0x92: {
          // NEWOBJ_EX
          const kwargs = this.pop(at);
          const args = this.pop(at);
          const cls = this.pop(at);
          const obj = this.object('newobj_ex', cls, args, at);
          obj.kwargs = kwargs;
          this.push(obj, at);
          break;
        }
        case 0x69: {
          // INST
          const module = this.readLineUtf8(at);
          const name = this.readLineUtf8(at);
          const args = this.tuple(this.popMark(at), at);
          this.push(this.object('inst', this.global(module, name, at), args, at), at);
          break;
        }
        case 0x6f: {
          // OBJ
          const items = this.popMark(at);
          if (items.length === 0) throw this.fail('PICKLE_STACK', at, 'OBJ needs a class after the MARK');
          const args = this.tuple(items.slice(1), at);
          this.push(this.object('obj', items[0], args, at), at);
          break;
        }
        case 0x62: {
          // BUILD
          const state = this.pop(at);
          const target = this.top(at);
          if (target.kind !== 'object')
            throw this.fail('PICKLE_STACK', at, `BUILD on a ${target.kind} (only objects can be built)`);
          if (target.state === undefined) target.state = state;
          else (target.extraStates ??= []).push(state);
          break;
        }
        case 0x50: {
          // PERSID: text pid
          const [s, e] = this.readLine(at);
          const pid = this.str(this.latin1(s, e), at);
          this.push({ kind: 'persid', pid, binary: false, memo: false }, at);
          break;
        }
        case 0x51: {
          // BINPERSID
          const pid = this.pop(at);
          this.push({ kind: 'persid', pid, binary: true, memo: false }, at);
          break;
        }
        case 0x82: // EXT1
        case 0x83: // EXT2
        case 0x84: // EXT4
          throw this.fail('PICKLE_BAD_OPCODE', at, 'extension registry codes (copyreg) are not supported');

        // ---- framing ----
        case 0x80: {
          // PROTO
          this.need(1, at);
          const p = buf[this.pos++];
          if (p > HIGHEST_PROTOCOL) throw this.fail('PICKLE_BAD_OPCODE', at, `unsupported pickle protocol ${p}`);
          this.protocol = p;
          break;
        }
        case 0x95: {
          // FRAME: a length prefix only; frames carry no meaning for us
          const n = this.readU64(at);
          if (n > len - this.pos) throw this.fail('PICKLE_TRUNCATED', at, `frame of ${n} bytes runs past the end`);
          break;
        }
        default:
          throw this.fail('PICKLE_BAD_OPCODE', at, `unknown opcode ${describeOpcode(op)}`);
      }
      if (stack.length + this.marks.length > maxStack)
        throw this.fail('PICKLE_LIMIT', at, `stack deeper than ${maxStack}`);
    }
  }

  // ---- errors ----

  private fail(code: FormatErrorCode, at: number, message: string): FormatError {
    const op = at < this.buf.length ? ` (${describeOpcode(this.buf[at])})` : '';
    return new FormatError(code, `pickle: ${message} at offset ${at}${op}`);
  }

  // ---- node creation ----

  private count(at: number): void {
    if (++this.nodeCount > this.limits.maxNodes)
      throw this.fail('PICKLE_LIMIT', at, `more than ${this.limits.maxNodes} nodes`);
  }

  private push(node: PyNode, at: number): void {
    this.count(at);
    this.stack.push(node);
  }

  private pushInt(value: bigint, at: number): void {
    this.push({ kind: 'int', value, memo: false }, at);
  }

  private str(value: string, at: number): PyStr {
    this.count(at);
    return { kind: 'str', value, memo: false };
  }

  private pushStr(value: string, at: number): void {
    this.stack.push(this.str(value, at));
  }

  private pushBytes(n: number, bytearray: boolean, at: number): void {
    const s = this.take(n, at);
    // A copy (Buffer#slice would be a view): the tree must not alias the caller's buffer.
    const value = new Uint8Array(n);
    value.set(this.buf.subarray(s, s + n));
    this.push(
      bytearray ? { kind: 'bytes', value, bytearray: true, memo: false } : { kind: 'bytes', value, memo: false },
      at,
    );
  }

  private tuple(items: PyNode[], at: number): PyTuple {
    this.count(at);
    return { kind: 'tuple', items, memo: false };
  }

  private object(how: PyObject['how'], callable: PyNode, args: PyNode, at: number): PyObject {
    this.count(at);
    return { kind: 'object', how, callable, args, memo: false };
  }

  private global(module: string, name: string, at: number): PyGlobal {
    this.count(at);
    const node: PyGlobal = { kind: 'global', module, name, memo: false };
    const key = `${module}\n${name}`;
    if (!this.globalKeys.has(key)) {
      this.globalKeys.add(key);
      this.globals.push(node);
    }
    return node;
  }

  // ---- stack access (never below the innermost MARK, as in CPython) ----

  private pop(at: number): PyNode {
    if (this.stack.length <= this.base) throw this.fail('PICKLE_STACK', at, 'stack underflow');
    return this.stack.pop() as PyNode;
  }

  private top(at: number): PyNode {
    if (this.stack.length <= this.base) throw this.fail('PICKLE_STACK', at, 'stack underflow');
    return this.stack[this.stack.length - 1];
  }

  private popN(n: number, at: number): PyNode[] {
    if (this.stack.length - this.base < n) throw this.fail('PICKLE_STACK', at, 'stack underflow');
    return this.stack.splice(this.stack.length - n, n);
  }

  private popMark(at: number): PyNode[] {
    const mark = this.marks.pop();
    if (mark === undefined) throw this.fail('PICKLE_STACK', at, 'no MARK to pop to');
    this.base = this.marks.length > 0 ? this.marks[this.marks.length - 1] : 0;
    return this.stack.splice(mark);
  }

  private pairsInto(items: PyNode[], into: Array<[PyNode, PyNode]>, at: number): void {
    if (items.length % 2 !== 0)
      throw this.fail('PICKLE_STACK', at, `odd number of items (${items.length}) for key/value pairs`);
    for (let i = 0; i < items.length; i += 2) into.push([items[i], items[i + 1]]);
  }

  private setItemsTarget(at: number): Array<[PyNode, PyNode]> {
    const target = this.top(at);
    if (target.kind === 'dict') return target.entries;
    if (target.kind === 'object') return (target.setitems ??= []);
    throw this.fail('PICKLE_STACK', at, `cannot set items on a ${target.kind}`);
  }

  // ---- memo ----

  private put(index: number, at: number): void {
    const node = this.top(at);
    if (this.memo[index] === undefined) {
      if (this.memoSize >= this.limits.maxMemo)
        throw this.fail('PICKLE_LIMIT', at, `more than ${this.limits.maxMemo} memo entries`);
      this.memoSize++;
    }
    this.memo[index] = node;
    node.memo = true;
  }

  private get(index: number, at: number): void {
    const node = this.memo[index];
    if (node === undefined) throw this.fail('PICKLE_MEMO', at, `memo key ${index} was never stored`);
    this.noteShared(node);
    this.stack.push(node);
  }

  private noteShared(node: PyNode): void {
    if (isContainer(node)) this.sharedContainer = true;
    else this.leafRefs++;
  }

  // ---- operand readers ----

  private need(n: number, at: number): void {
    if (n > this.buf.length - this.pos) {
      throw this.fail('PICKLE_TRUNCATED', at, `operand needs ${n} bytes, ${this.buf.length - this.pos} left`);
    }
  }

  /** Check a declared string/bytes length (input first, then limits), consume it, return its start. */
  private take(n: number, at: number): number {
    this.need(n, at);
    if (n > this.limits.maxStringBytes)
      throw this.fail('PICKLE_LIMIT', at, `string of ${n} bytes exceeds ${this.limits.maxStringBytes}`);
    const s = this.pos;
    this.pos += n;
    return s;
  }

  /** An 8-byte little-endian length. Values past 2**53 are only ever compared against the input size. */
  private readU64(at: number): number {
    this.need(8, at);
    const lo = this.view.getUint32(this.pos, true);
    const hi = this.view.getUint32(this.pos + 4, true);
    this.pos += 8;
    return hi * 0x1_0000_0000 + lo;
  }

  /** LONG1/LONG4 operand: little-endian two's complement. */
  private readLong(n: number, at: number): bigint {
    this.need(n, at);
    if (n > this.limits.maxLongBytes)
      throw this.fail('PICKLE_LIMIT', at, `integer of ${n} bytes exceeds ${this.limits.maxLongBytes}`);
    const buf = this.buf;
    const s = this.pos;
    this.pos += n;
    if (n === 0) return 0n;
    let value: bigint;
    if (n <= 6) {
      let v = 0;
      for (let i = n - 1; i >= 0; i--) v = v * 256 + buf[s + i];
      value = BigInt(v);
    } else {
      let hex = '';
      for (let i = n - 1; i >= 0; i--) hex += HEX[buf[s + i]];
      value = BigInt(`0x${hex}`);
    }
    return buf[s + n - 1] & 0x80 ? value - (1n << BigInt(8 * n)) : value;
  }

  /** A protocol-0 text line without its '\n', as [start, end). */
  private readLine(at: number): [number, number] {
    const s = this.pos;
    const nl = this.buf.indexOf(0x0a, s);
    if (nl < 0) throw this.fail('PICKLE_TRUNCATED', at, 'text operand has no terminating newline');
    if (nl - s > this.limits.maxStringBytes)
      throw this.fail('PICKLE_LIMIT', at, `text operand of ${nl - s} bytes exceeds ${this.limits.maxStringBytes}`);
    this.pos = nl + 1;
    return [s, nl];
  }

  private readLineUtf8(at: number): string {
    const [s, e] = this.readLine(at);
    return this.utf8(s, e, at);
  }

  /** PUT/GET text operand: a non-negative decimal. */
  private readTextIndex(at: number): number {
    const [s, e] = this.readLine(at);
    const text = this.latin1(s, e);
    if (!/^\d{1,15}$/.test(text))
      throw this.fail('PICKLE_BAD_OPCODE', at, `bad memo index ${JSON.stringify(text.slice(0, 40))}`);
    return Number(text);
  }

  private readUtf8(n: number, at: number): string {
    const s = this.take(n, at);
    return this.utf8(s, s + n, at);
  }

  // ---- text decoding ----

  private latin1(s: number, e: number): string {
    return this.nb.toString('latin1', s, e);
  }

  /** UTF-8 with Python's 'surrogatepass': an encoded lone surrogate (ED A0..BF xx) is accepted. */
  private utf8(s: number, e: number, at: number): string {
    const buf = this.buf;
    if (e - s <= 256) {
      // Short ASCII (most keys and names): latin-1 slicing is cheaper than TextDecoder.
      let i = s;
      while (i < e && buf[i] < 0x80) i++;
      if (i === e) return this.nb.toString('latin1', s, e);
    }
    try {
      return UTF8.decode(buf.subarray(s, e));
    } catch {
      const text = decodeUtf8SurrogatePass(buf, s, e);
      if (text === undefined) throw this.fail('PICKLE_BAD_OPCODE', at, 'string is not valid UTF-8');
      return text;
    }
  }

  /** Text INT/LONG operand, read like Python's int(text, 0) for the forms picklers write. */
  private parseTextInt(s: number, e: number, at: number): bigint {
    if (e - s > this.limits.maxLongBytes * 3)
      throw this.fail('PICKLE_LIMIT', at, `integer text of ${e - s} bytes is too long`);
    const text = this.latin1(s, e).trim().replace(/_/g, '');
    const m = /^([+-]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|\d+)$/.exec(text);
    if (!m) throw this.fail('PICKLE_BAD_OPCODE', at, `bad integer text ${JSON.stringify(text.slice(0, 40))}`);
    const magnitude = BigInt(
      m[2].length > 1 && m[2][0] === '0' && /[xXoObB]/.test(m[2][1]) ? m[2].toLowerCase() : m[2],
    );
    return m[1] === '-' ? -magnitude : magnitude;
  }

  /** Text FLOAT operand, read like Python's float(text). */
  private parseTextFloat(s: number, e: number, at: number): number {
    const text = this.latin1(s, e).trim().toLowerCase().replace(/_/g, '');
    const special = /^([+-]?)(inf|infinity|nan)$/.exec(text);
    if (special) {
      if (special[2] === 'nan') return NaN;
      return special[1] === '-' ? -Infinity : Infinity;
    }
    if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(text)) {
      throw this.fail('PICKLE_BAD_OPCODE', at, `bad float text ${JSON.stringify(text.slice(0, 40))}`);
    }
    return Number(text);
  }

  /** Python's 'raw-unicode-escape' decoding (UNICODE): bytes are latin-1, \uXXXX and \UXXXXXXXX are escapes. */
  private rawUnicodeEscape(s: number, e: number, at: number): string {
    const buf = this.buf;
    const parts: string[] = [];
    let i = s;
    let runStart = s;
    while (i < e) {
      if (buf[i] !== 0x5c) {
        i++;
        continue;
      }
      // A run of backslashes: an escape only if the run is odd and followed by u/U.
      let j = i;
      while (j < e && buf[j] === 0x5c) j++;
      if ((j - i) % 2 === 0 || j >= e || (buf[j] !== 0x75 && buf[j] !== 0x55)) {
        i = j;
        continue;
      }
      parts.push(this.latin1(runStart, j - 1));
      const digits = buf[j] === 0x75 ? 4 : 8;
      if (j + 1 + digits > e) throw this.fail('PICKLE_BAD_OPCODE', at, 'truncated \\u escape in UNICODE');
      const hex = this.latin1(j + 1, j + 1 + digits);
      if (!/^[0-9a-fA-F]+$/.test(hex)) throw this.fail('PICKLE_BAD_OPCODE', at, 'bad \\u escape in UNICODE');
      const cp = parseInt(hex, 16);
      if (cp > 0x10ffff) throw this.fail('PICKLE_BAD_OPCODE', at, '\\U escape out of range in UNICODE');
      parts.push(String.fromCodePoint(cp));
      i = runStart = j + 1 + digits;
    }
    parts.push(this.latin1(runStart, e));
    return parts.join('');
  }

  /** Python's codecs.escape_decode (STRING operand), result read as latin-1. */
  private escapeDecode(s: number, e: number, at: number): string {
    const buf = this.buf;
    let out = '';
    let i = s;
    while (i < e) {
      const b = buf[i++];
      if (b !== 0x5c) {
        out += String.fromCharCode(b);
        continue;
      }
      if (i >= e) throw this.fail('PICKLE_BAD_OPCODE', at, 'trailing \\ in STRING');
      const c = buf[i++];
      switch (c) {
        case 0x0a:
          break; // backslash-newline: line continuation
        case 0x5c:
          out += '\\';
          break;
        case 0x27:
          out += "'";
          break;
        case 0x22:
          out += '"';
          break;
        case 0x61:
          out += '\x07';
          break; // \a
        case 0x62:
          out += '\b';
          break;
        case 0x66:
          out += '\f';
          break;
        case 0x6e:
          out += '\n';
          break;
        case 0x72:
          out += '\r';
          break;
        case 0x74:
          out += '\t';
          break;
        case 0x76:
          out += '\v';
          break;
        case 0x78: {
          // \xhh
          const hex = this.latin1(i, Math.min(i + 2, e));
          if (!/^[0-9a-fA-F]{2}$/.test(hex)) throw this.fail('PICKLE_BAD_OPCODE', at, 'bad \\x escape in STRING');
          out += String.fromCharCode(parseInt(hex, 16));
          i += 2;
          break;
        }
        default:
          if (c >= 0x30 && c <= 0x37) {
            // up to three octal digits, wrapped to a byte
            let v = c - 0x30;
            for (let k = 0; k < 2 && i < e && buf[i] >= 0x30 && buf[i] <= 0x37; k++) v = v * 8 + (buf[i++] - 0x30);
            out += String.fromCharCode(v & 0xff);
          } else {
            out += `\\${String.fromCharCode(c)}`; // unknown escapes are kept verbatim
          }
      }
    }
    return out;
  }
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * Strict UTF-8 plus encoded surrogates (what Python writes for a str holding a lone surrogate).
 * Returns undefined for anything else that is invalid. Note: a surrogate *pair* written as two
 * 3-byte sequences becomes one JS astral character, so it re-encodes as 4 bytes (not round-trip exact).
 */
function decodeUtf8SurrogatePass(buf: Uint8Array, s: number, e: number): string | undefined {
  const units: number[] = [];
  const parts: string[] = [];
  let i = s;
  while (i < e) {
    const b0 = buf[i];
    let cp: number;
    if (b0 < 0x80) {
      cp = b0;
      i += 1;
    } else if (b0 >= 0xc2 && b0 <= 0xdf) {
      if (i + 1 >= e || !isCont(buf[i + 1])) return undefined;
      cp = ((b0 & 0x1f) << 6) | (buf[i + 1] & 0x3f);
      i += 2;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      if (i + 2 >= e || !isCont(buf[i + 1]) || !isCont(buf[i + 2])) return undefined;
      if (b0 === 0xe0 && buf[i + 1] < 0xa0) return undefined; // overlong
      cp = ((b0 & 0x0f) << 12) | ((buf[i + 1] & 0x3f) << 6) | (buf[i + 2] & 0x3f);
      i += 3;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      if (i + 3 >= e || !isCont(buf[i + 1]) || !isCont(buf[i + 2]) || !isCont(buf[i + 3])) return undefined;
      if (b0 === 0xf0 && buf[i + 1] < 0x90) return undefined; // overlong
      if (b0 === 0xf4 && buf[i + 1] > 0x8f) return undefined; // > U+10FFFF
      cp = ((b0 & 0x07) << 18) | ((buf[i + 1] & 0x3f) << 12) | ((buf[i + 2] & 0x3f) << 6) | (buf[i + 3] & 0x3f);
      i += 4;
    } else {
      return undefined;
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      units.push(0xd800 | (cp >> 10), 0xdc00 | (cp & 0x3ff));
    } else {
      units.push(cp);
    }
    if (units.length >= 8192) parts.push(String.fromCharCode(...units.splice(0)));
  }
  parts.push(String.fromCharCode(...units));
  return parts.join('');
}

function isCont(b: number): boolean {
  return (b & 0xc0) === 0x80;
}

// ---- post-pass: cycles, expanded size, depth ----

/** Children of an object or persid node (rare kinds: flattening them is cheap enough). */
function otherChildren(n: PyObject | PyPersId): PyNode[] {
  if (n.kind === 'persid') return [n.pid];
  const out: PyNode[] = [n.callable, n.args];
  if (n.kwargs) out.push(n.kwargs);
  if (n.appends) for (const a of n.appends) out.push(a);
  if (n.setitems) for (const [k, v] of n.setitems) out.push(k, v);
  if (n.state) out.push(n.state);
  if (n.extraStates) for (const s of n.extraStates) out.push(s);
  return out;
}

/** Number of children of a container; -1 for leaves. */
function childCount(n: PyNode, others: PyNode[] | undefined): number {
  switch (n.kind) {
    case 'list':
    case 'tuple':
    case 'set':
      return n.items.length;
    case 'dict':
      return n.entries.length * 2;
    case 'object':
    case 'persid':
      return (others as PyNode[]).length;
    default:
      return -1;
  }
}

function childAt(n: PyNode, i: number, others: PyNode[] | undefined): PyNode {
  switch (n.kind) {
    case 'list':
    case 'tuple':
    case 'set':
      return n.items[i];
    case 'dict':
      return n.entries[i >> 1][i & 1];
    default:
      return (others as PyNode[])[i];
  }
}

function isContainer(n: PyNode): boolean {
  switch (n.kind) {
    case 'list':
    case 'tuple':
    case 'set':
    case 'dict':
    case 'object':
    case 'persid':
      return true;
    default:
      return false;
  }
}

/**
 * Iterative DFS over the DAG. Each shared container's expanded size (a node reached k times counts
 * k times) and depth are computed once and reused, so a memo bomb costs time linear in the input.
 * Only nodes that can be reached twice — memoized ones and DUP'ed ones — need bookkeeping: any
 * cycle has to pass through such a node.
 */
function checkTree(root: PyNode, limits: PickleLimits, end: number, duplicated: Set<PyNode>): void {
  const fail = (msg: string) =>
    new FormatError('PICKLE_LIMIT', `pickle: ${msg} (checked after STOP at offset ${end - 1})`);
  const tooMany = () => fail(`more than ${limits.maxNodes} nodes once shared references are expanded`);
  if (!isContainer(root)) return;
  const cap = limits.maxNodes + 1;
  /** Shared nodes only: -1 while on the DFS path (gray), else an index into doneSize/doneDepth. */
  const state = new Map<PyNode, number>();
  const doneSize: number[] = [];
  const doneDepth: number[] = [];
  // The DFS path, one entry per frame.
  const nodes: PyNode[] = [];
  const others: Array<PyNode[] | undefined> = [];
  const counts: number[] = [];
  const next: number[] = [];
  const accSize: number[] = [];
  const accDepth: number[] = [];
  const anyDup = duplicated.size > 0;

  const enter = (n: PyNode): void => {
    if (nodes.length >= limits.maxDepth) throw fail(`nesting deeper than ${limits.maxDepth}`);
    if (n.memo === true || (anyDup && duplicated.has(n))) state.set(n, -1);
    const o = n.kind === 'object' || n.kind === 'persid' ? otherChildren(n) : undefined;
    nodes.push(n);
    others.push(o);
    counts.push(childCount(n, o));
    next.push(0);
    accSize.push(0);
    accDepth.push(0);
  };
  enter(root);
  while (nodes.length > 0) {
    const top = nodes.length - 1;
    const i = next[top];
    if (i < counts[top]) {
      next[top] = i + 1;
      const child = childAt(nodes[top], i, others[top]);
      let size = 1;
      let depth = 1;
      if (isContainer(child)) {
        const s = child.memo === true || (anyDup && duplicated.has(child)) ? state.get(child) : undefined;
        if (s === undefined) {
          enter(child);
          continue;
        }
        if (s === -1) throw fail('cyclic structure (a container contains itself)');
        size = doneSize[s];
        depth = doneDepth[s];
      }
      accSize[top] = Math.min(cap, accSize[top] + size);
      if (depth > accDepth[top]) accDepth[top] = depth;
      if (accSize[top] >= cap) throw tooMany();
      continue;
    }
    // All children done: finish this node and report it to its parent.
    const size = Math.min(cap, 1 + accSize[top]);
    const depth = 1 + accDepth[top];
    if (size >= cap) throw tooMany();
    if (depth > limits.maxDepth) throw fail(`nesting deeper than ${limits.maxDepth}`);
    const node = nodes[top];
    if (node.memo === true || (anyDup && duplicated.has(node))) {
      state.set(node, doneSize.length);
      doneSize.push(size);
      doneDepth.push(depth);
    }
    nodes.pop();
    others.pop();
    counts.pop();
    next.pop();
    accSize.pop();
    accDepth.pop();
    if (top > 0) {
      const p = top - 1;
      accSize[p] = Math.min(cap, accSize[p] + size);
      if (depth > accDepth[p]) accDepth[p] = depth;
      if (accSize[p] >= cap) throw tooMany();
    }
  }
}
