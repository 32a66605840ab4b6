/**
 * Pickle decoder (protocols 0–5) into the inert tree of nodes.ts. Nothing is ever imported or called:
 * GLOBAL is a name, REDUCE/NEWOBJ/INST/OBJ are records of a call, BUILD/APPEND/SETITEM on such a
 * record are kept as fields of the record.
 *
 * The input is untrusted. Every declared length is checked against the remaining input before
 * anything is allocated, every count against PickleLimits (pickleMachine.ts), and after STOP an
 * iterative post-pass (treeCheck.ts) rejects cycles, trees deeper than maxDepth and trees whose
 * memo-expanded size exceeds maxNodes ("billion laughs"), so that consumers may walk the result
 * recursively. This module is the opcode dispatch; Python's text codecs are in pyText.ts.
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
import { type PickleLimits, resolveLimits } from './limits';
import type { PyGlobal, PyNode } from './nodes';
import { describeOpcode, HIGHEST_PROTOCOL, OP, OPCODE_PROTOCOL } from './opcodes';
import { PickleMachine } from './pickleMachine';
import { escapeDecode, parseTextFloat, rawUnicodeEscape } from './pyText';
import { checkTree } from './treeCheck';

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

/** Module-level copy: an imported binding may compile to a getter call on every access. */
const OPCODE_PROTO: Uint8Array = OPCODE_PROTOCOL;
/** BININT1 values, created once (a bigint is a heap object). */
const SMALL_INTS: bigint[] = Array.from({ length: 256 }, (_, i) => BigInt(i));

/**
 * One switch over the opcodes. OP is an enum, so the bundler inlines each case as a number literal
 * and V8 compiles the switch to a jump table (a map of handlers, or non-literal cases, would not be).
 */
class PickleDecoder extends PickleMachine {
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
        case OP.MARK:
          if (this.marks.length >= this.limits.maxMarks)
            throw this.fail('PICKLE_LIMIT', at, `more than ${this.limits.maxMarks} open MARKs`);
          this.marks.push(stack.length);
          this.base = stack.length;
          break;
        case OP.STOP: {
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
        case OP.POP: // like CPython, an empty frame above a MARK pops the MARK
          if (stack.length > this.base) stack.pop();
          else if (this.marks.length > 0) this.popMark(at);
          else throw this.fail('PICKLE_STACK', at, 'stack underflow');
          break;
        case OP.POP_MARK:
          this.popMark(at);
          break;
        case OP.DUP: {
          const node = this.top(at);
          this.duplicated.add(node);
          this.noteShared(node);
          stack.push(node);
          break;
        }

        // ---- numbers and constants ----
        case OP.NONE:
          this.push({ kind: 'none', memo: false }, at);
          break;
        case OP.NEWTRUE:
          this.push({ kind: 'bool', value: true, memo: false }, at);
          break;
        case OP.NEWFALSE:
          this.push({ kind: 'bool', value: false, memo: false }, at);
          break;
        case OP.BININT1:
          this.need(1, at);
          this.pushInt(SMALL_INTS[buf[this.pos++]], at);
          break;
        case OP.BININT2:
          this.need(2, at);
          this.pushInt(BigInt(this.view.getUint16(this.pos, true)), at);
          this.pos += 2;
          break;
        case OP.BININT:
          this.need(4, at);
          this.pushInt(BigInt(this.view.getInt32(this.pos, true)), at);
          this.pos += 4;
          break;
        case OP.LONG1: {
          this.need(1, at);
          const n = buf[this.pos++];
          this.pushInt(this.readLong(n, at), at);
          break;
        }
        case OP.LONG4: {
          this.need(4, at);
          const n = this.view.getInt32(this.pos, true);
          this.pos += 4;
          if (n < 0) throw this.fail('PICKLE_BAD_OPCODE', at, `negative byte count ${n}`);
          this.pushInt(this.readLong(n, at), at);
          break;
        }
        case OP.INT: {
          // text; '00'/'01' are protocol 0's False/True
          const [s, e] = this.readLine(at);
          if (e - s === 2 && buf[s] === 0x30 && (buf[s + 1] === 0x30 || buf[s + 1] === 0x31)) {
            this.push({ kind: 'bool', value: buf[s + 1] === 0x31, memo: false }, at);
          } else {
            this.pushInt(this.textInt(s, e, at), at);
          }
          break;
        }
        case OP.LONG: {
          // text with an optional trailing 'L'
          const [s, e0] = this.readLine(at);
          const e = e0 > s && buf[e0 - 1] === 0x4c ? e0 - 1 : e0;
          this.pushInt(this.textInt(s, e, at), at);
          break;
        }
        case OP.BINFLOAT: // 8-byte big-endian double
          this.need(8, at);
          this.push({ kind: 'float', value: this.view.getFloat64(this.pos, false), memo: false }, at);
          this.pos += 8;
          break;
        case OP.FLOAT: {
          // text (repr of a float)
          const [s, e] = this.readLine(at);
          this.push({ kind: 'float', value: this.decodeText(parseTextFloat, s, e, at), memo: false }, at);
          break;
        }

        // ---- strings and bytes ----
        case OP.BINUNICODE: {
          this.need(4, at);
          const n = this.view.getUint32(this.pos, true);
          this.pos += 4;
          this.pushStr(this.readUtf8(n, at), at);
          break;
        }
        case OP.SHORT_BINUNICODE: {
          this.need(1, at);
          const n = buf[this.pos++];
          this.pushStr(this.readUtf8(n, at), at);
          break;
        }
        case OP.BINUNICODE8:
          this.pushStr(this.readUtf8(this.readU64(at), at), at);
          break;
        case OP.UNICODE: {
          // raw-unicode-escape text line
          const [s, e] = this.readLine(at);
          this.pushStr(this.decodeText(rawUnicodeEscape, s, e, at), at);
          break;
        }
        case OP.STRING: {
          // py2 str repr, quoted and escaped; latin-1 (see header)
          const [s, e] = this.readLine(at);
          const q = buf[s];
          if (e - s < 2 || (q !== 0x27 && q !== 0x22) || buf[e - 1] !== q) {
            throw this.fail('PICKLE_BAD_OPCODE', at, 'the STRING operand must be quoted');
          }
          this.pushStr(this.decodeText(escapeDecode, s + 1, e - 1, at), at);
          break;
        }
        case OP.BINSTRING: {
          // py2 str, latin-1
          this.need(4, at);
          const n = this.view.getInt32(this.pos, true);
          this.pos += 4;
          if (n < 0) throw this.fail('PICKLE_BAD_OPCODE', at, `negative byte count ${n}`);
          const s = this.take(n, at);
          this.pushStr(this.latin1(s, s + n), at);
          break;
        }
        case OP.SHORT_BINSTRING: {
          // py2 str, latin-1
          this.need(1, at);
          const n = buf[this.pos++];
          const s = this.take(n, at);
          this.pushStr(this.latin1(s, s + n), at);
          break;
        }
        case OP.BINBYTES: {
          this.need(4, at);
          const n = this.view.getUint32(this.pos, true);
          this.pos += 4;
          this.pushBytes(n, false, at);
          break;
        }
        case OP.SHORT_BINBYTES: {
          this.need(1, at);
          this.pushBytes(buf[this.pos++], false, at);
          break;
        }
        case OP.BINBYTES8:
          this.pushBytes(this.readU64(at), false, at);
          break;
        case OP.BYTEARRAY8:
          this.pushBytes(this.readU64(at), true, at);
          break;
        case OP.NEXT_BUFFER:
        case OP.READONLY_BUFFER:
          throw this.fail('PICKLE_BAD_OPCODE', at, 'out-of-band buffers are not supported');

        // ---- containers ----
        case OP.EMPTY_LIST:
          this.push({ kind: 'list', items: [], memo: false }, at);
          break;
        case OP.LIST:
          this.push({ kind: 'list', items: this.popMark(at), memo: false }, at);
          break;
        case OP.APPEND: {
          const value = this.pop(at);
          const target = this.top(at);
          if (target.kind === 'list') target.items.push(value);
          else if (target.kind === 'object') (target.appends ??= []).push(value);
          else throw this.fail('PICKLE_STACK', at, `cannot append to a ${target.kind}`);
          break;
        }
        case OP.APPENDS: {
          const items = this.popMark(at);
          const target = this.top(at);
          let into: PyNode[];
          if (target.kind === 'list') into = target.items;
          else if (target.kind === 'object') into = target.appends ??= [];
          else throw this.fail('PICKLE_STACK', at, `cannot append to a ${target.kind}`);
          for (let i = 0; i < items.length; i++) into.push(items[i]);
          break;
        }
        case OP.EMPTY_TUPLE:
          this.push(this.tuple([], at), at);
          break;
        case OP.TUPLE:
          this.push(this.tuple(this.popMark(at), at), at);
          break;
        case OP.TUPLE1:
          this.push(this.tuple(this.popN(1, at), at), at);
          break;
        case OP.TUPLE2:
          this.push(this.tuple(this.popN(2, at), at), at);
          break;
        case OP.TUPLE3:
          this.push(this.tuple(this.popN(3, at), at), at);
          break;
        case OP.EMPTY_DICT:
          this.push({ kind: 'dict', entries: [], memo: false }, at);
          break;
        case OP.DICT: {
          const items = this.popMark(at);
          const entries: Array<[PyNode, PyNode]> = [];
          this.pairsInto(items, entries, at);
          this.push({ kind: 'dict', entries, memo: false }, at);
          break;
        }
        case OP.SETITEM: {
          const value = this.pop(at);
          const key = this.pop(at);
          this.setItemsTarget(at).push([key, value]);
          break;
        }
        case OP.SETITEMS: {
          const items = this.popMark(at);
          this.pairsInto(items, this.setItemsTarget(at), at);
          break;
        }
        case OP.EMPTY_SET:
          this.push({ kind: 'set', items: [], frozen: false, memo: false }, at);
          break;
        case OP.ADDITEMS: {
          const items = this.popMark(at);
          const target = this.top(at);
          if (target.kind !== 'set' || target.frozen)
            throw this.fail('PICKLE_STACK', at, `cannot add items to a ${target.kind}`);
          for (let i = 0; i < items.length; i++) target.items.push(items[i]);
          break;
        }
        case OP.FROZENSET:
          this.push({ kind: 'set', items: this.popMark(at), frozen: true, memo: false }, at);
          break;

        // ---- memo ----
        case OP.BINPUT:
          this.need(1, at);
          this.put(buf[this.pos++], at);
          break;
        case OP.LONG_BINPUT:
          this.need(4, at);
          this.put(this.view.getUint32(this.pos, true), at);
          this.pos += 4;
          break;
        case OP.PUT:
          this.put(this.readTextIndex(at), at);
          break;
        case OP.MEMOIZE:
          this.put(this.memoSize, at);
          break;
        case OP.BINGET:
          this.need(1, at);
          this.get(buf[this.pos++], at);
          break;
        case OP.LONG_BINGET:
          this.need(4, at);
          this.get(this.view.getUint32(this.pos, true), at);
          this.pos += 4;
          break;
        case OP.GET:
          this.get(this.readTextIndex(at), at);
          break;

        // ---- names and calls (recorded, never performed) ----
        case OP.GLOBAL: {
          const module = this.readLineUtf8(at);
          const name = this.readLineUtf8(at);
          this.push(this.global(module, name, at), at);
          break;
        }
        case OP.STACK_GLOBAL: {
          const name = this.pop(at);
          const module = this.pop(at);
          if (module.kind !== 'str' || name.kind !== 'str') {
            throw this.fail('PICKLE_STACK', at, `STACK_GLOBAL needs two str, got ${module.kind} and ${name.kind}`);
          }
          this.push(this.global(module.value, name.value, at), at);
          break;
        }
        case OP.REDUCE: {
          const args = this.pop(at);
          const callable = this.pop(at);
          this.push(this.object('reduce', callable, args, at), at);
          break;
        }
        case OP.NEWOBJ: {
          const args = this.pop(at);
          const cls = this.pop(at);
          this.push(this.object('newobj', cls, args, at), at);
          break;
        }
        case OP.NEWOBJ_EX: {
          const kwargs = this.pop(at);
          const args = this.pop(at);
          const cls = this.pop(at);
          const obj = this.object('newobj_ex', cls, args, at);
          obj.kwargs = kwargs;
          this.push(obj, at);
          break;
        }
        case OP.INST: {
          const module = this.readLineUtf8(at);
          const name = this.readLineUtf8(at);
          const args = this.tuple(this.popMark(at), at);
          this.push(this.object('inst', this.global(module, name, at), args, at), at);
          break;
        }
        case OP.OBJ: {
          const items = this.popMark(at);
          if (items.length === 0) throw this.fail('PICKLE_STACK', at, 'OBJ needs a class after the MARK');
          const args = this.tuple(items.slice(1), at);
          this.push(this.object('obj', items[0], args, at), at);
          break;
        }
        case OP.BUILD: {
          const state = this.pop(at);
          const target = this.top(at);
          if (target.kind !== 'object')
            throw this.fail('PICKLE_STACK', at, `BUILD on a ${target.kind} (only objects can be built)`);
          if (target.state === undefined) target.state = state;
          else (target.extraStates ??= []).push(state);
          break;
        }
        case OP.PERSID: {
          // text pid
          const [s, e] = this.readLine(at);
          const pid = this.str(this.latin1(s, e), at);
          this.push({ kind: 'persid', pid, binary: false, memo: false }, at);
          break;
        }
        case OP.BINPERSID: {
          const pid = this.pop(at);
          this.push({ kind: 'persid', pid, binary: true, memo: false }, at);
          break;
        }
        case OP.EXT1:
        case OP.EXT2:
        case OP.EXT4:
          throw this.fail('PICKLE_BAD_OPCODE', at, 'extension registry codes (copyreg) are not supported');

        // ---- framing ----
        case OP.PROTO: {
          this.need(1, at);
          const p = buf[this.pos++];
          if (p > HIGHEST_PROTOCOL) throw this.fail('PICKLE_BAD_OPCODE', at, `unsupported pickle protocol ${p}`);
          this.protocol = p;
          break;
        }
        case OP.FRAME: {
          // a length prefix only; frames carry no meaning for us
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
}
