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
import { describeOpcode, HIGHEST_PROTOCOL, OPCODE_PROTOCOL } from './opcodes';
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
  /**
   * Every call (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ) calls a GLOBAL node itself, never what another
   * call returned or a literal: with every global allowlisted, nothing the pickle runs is unnamed
   * (see fileSafety.ts `plainlySafe`).
   */
  callsNamed: boolean;
}

export function decodePickle(buf: Uint8Array, opts?: Partial<PickleLimits>): DecodedPickle {
  return new PickleDecoder(buf, resolveLimits(opts)).run();
}

/** Module-level copy: an imported binding may compile to a getter call on every access. */
const OPCODE_PROTO: Uint8Array = OPCODE_PROTOCOL;
/** BININT1 values, created once (a bigint is a heap object). */
const SMALL_INTS: bigint[] = Array.from({ length: 256 }, (_, i) => BigInt(i));

/**
 * One switch over the opcode bytes. The cases are number literals, so that V8 compiles the switch to
 * a jump table: `case OP.MARK` would be a chain of comparisons (about 10 % slower decoding measured
 * bundled, 8x under tsx). Each case names its opcode in a comment, checked against OP by the unit
 * tests (pickle.test.ts).
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
            callsNamed: this.callsNamed,
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
        case 0x4e: // NONE
          this.push({ kind: 'none', memo: false }, at);
          break;
        case 0x88: // NEWTRUE
          this.push({ kind: 'bool', value: true, memo: false }, at);
          break;
        case 0x89: // NEWFALSE
          this.push({ kind: 'bool', value: false, memo: false }, at);
          break;
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
            this.pushInt(this.textInt(s, e, at), at);
          }
          break;
        }
        case 0x4c: {
          // LONG: text with an optional trailing 'L'
          const [s, e0] = this.readLine(at);
          const e = e0 > s && buf[e0 - 1] === 0x4c ? e0 - 1 : e0;
          this.pushInt(this.textInt(s, e, at), at);
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
          this.push({ kind: 'float', value: this.decodeText(parseTextFloat, s, e, at), memo: false }, at);
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
          this.pushStr(this.decodeText(rawUnicodeEscape, s, e, at), at);
          break;
        }
        case 0x53: {
          // STRING: py2 str repr, quoted and escaped; latin-1 (see header)
          const [s, e] = this.readLine(at);
          const q = buf[s];
          if (e - s < 2 || (q !== 0x27 && q !== 0x22) || buf[e - 1] !== q) {
            throw this.fail('PICKLE_BAD_OPCODE', at, 'the STRING operand must be quoted');
          }
          this.pushStr(this.decodeText(escapeDecode, s + 1, e - 1, at), at);
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
        case 0x5d: // EMPTY_LIST
          this.push({ kind: 'list', items: [], memo: false }, at);
          break;
        case 0x6c: // LIST
          this.push({ kind: 'list', items: this.popMark(at), memo: false }, at);
          break;
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
        case 0x29: // EMPTY_TUPLE
          this.push(this.tuple([], at), at);
          break;
        case 0x74: // TUPLE
          this.push(this.tuple(this.popMark(at), at), at);
          break;
        case 0x85: // TUPLE1
          this.push(this.tuple(this.popN(1, at), at), at);
          break;
        case 0x86: // TUPLE2
          this.push(this.tuple(this.popN(2, at), at), at);
          break;
        case 0x87: // TUPLE3
          this.push(this.tuple(this.popN(3, at), at), at);
          break;
        case 0x7d: // EMPTY_DICT
          this.push({ kind: 'dict', entries: [], memo: false }, at);
          break;
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
        case 0x8f: // EMPTY_SET
          this.push({ kind: 'set', items: [], frozen: false, memo: false }, at);
          break;
        case 0x90: {
          // ADDITEMS
          const items = this.popMark(at);
          const target = this.top(at);
          if (target.kind !== 'set' || target.frozen)
            throw this.fail('PICKLE_STACK', at, `cannot add items to a ${target.kind}`);
          for (let i = 0; i < items.length; i++) target.items.push(items[i]);
          break;
        }
        case 0x91: // FROZENSET
          this.push({ kind: 'set', items: this.popMark(at), frozen: true, memo: false }, at);
          break;

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
}
