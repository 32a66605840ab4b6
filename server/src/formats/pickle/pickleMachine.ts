/**
 * The pickle machine's state and primitives: stack and MARKs, memo, node creation with its limits,
 * operand readers. decoder.ts drives it, one opcode at a time. Every declared length is checked
 * against the remaining input before anything is allocated, every count against PickleLimits.
 */
import { FormatError, type FormatErrorCode } from '../errors';
import type { PickleLimits } from './limits';
import type { PyGlobal, PyNode, PyObject, PyStr, PyTuple } from './nodes';
import { describeOpcode } from './opcodes';
import { decodeLong, decodeUtf8, PyTextError, parseTextInt } from './pyText';
import { isContainer } from './treeCheck';

export class PickleMachine {
  protected pos = 0;
  protected readonly view: DataView;
  /** The same bytes as a Buffer (no copy), for fast latin-1 slicing. */
  protected readonly nb: Buffer;
  protected readonly stack: PyNode[] = [];
  /** Stack heights at each open MARK; `base` is the innermost one (values below it are out of reach). */
  protected readonly marks: number[] = [];
  protected base = 0;
  /** Memo by index. Python writes dense indices from 0; a sparse hostile index just makes the array sparse. */
  protected readonly memo: PyNode[] = [];
  protected memoSize = 0;
  /** Nodes pushed twice by DUP: like memoized nodes, they may be reached twice (see checkTree). */
  protected readonly duplicated = new Set<PyNode>();
  /**
   * Whether a container was ever pushed a second time (GET, DUP), and how many extra references to
   * leaves were: without the former there can be no cycle and no blow-up (see run, STOP).
   */
  protected sharedContainer = false;
  protected leafRefs = 0;
  protected readonly globals: PyGlobal[] = [];
  protected readonly globalKeys = new Set<string>();
  protected nodeCount = 0;
  /** False once a call's callable is not a GLOBAL node (see DecodedPickle.callsNamed). */
  protected callsNamed = true;
  protected protocol = -1;
  protected inferredProtocol = 0;

  constructor(
    protected readonly buf: Uint8Array,
    protected readonly limits: PickleLimits,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.nb = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  // ---- errors ----

  protected fail(code: FormatErrorCode, at: number, message: string): FormatError {
    const op = at < this.buf.length ? ` (${describeOpcode(this.buf[at])})` : '';
    return new FormatError(code, `pickle: ${message} at offset ${at}${op}`);
  }

  // ---- node creation ----

  protected count(at: number): void {
    if (++this.nodeCount > this.limits.maxNodes)
      throw this.fail('PICKLE_LIMIT', at, `more than ${this.limits.maxNodes} nodes`);
  }

  protected push(node: PyNode, at: number): void {
    this.count(at);
    this.stack.push(node);
  }

  protected pushInt(value: bigint, at: number): void {
    this.push({ kind: 'int', value, memo: false }, at);
  }

  protected str(value: string, at: number): PyStr {
    this.count(at);
    return { kind: 'str', value, memo: false };
  }

  protected pushStr(value: string, at: number): void {
    this.stack.push(this.str(value, at));
  }

  protected pushBytes(n: number, bytearray: boolean, at: number): void {
    const s = this.take(n, at);
    // A copy (Buffer#slice would be a view): the tree must not alias the caller's buffer.
    const value = new Uint8Array(n);
    value.set(this.buf.subarray(s, s + n));
    this.push(
      bytearray ? { kind: 'bytes', value, bytearray: true, memo: false } : { kind: 'bytes', value, memo: false },
      at,
    );
  }

  protected tuple(items: PyNode[], at: number): PyTuple {
    this.count(at);
    return { kind: 'tuple', items, memo: false };
  }

  protected object(how: PyObject['how'], callable: PyNode, args: PyNode, at: number): PyObject {
    this.count(at);
    if (callable.kind !== 'global') this.callsNamed = false;
    return { kind: 'object', how, callable, args, memo: false };
  }

  protected global(module: string, name: string, at: number): PyGlobal {
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

  protected pop(at: number): PyNode {
    if (this.stack.length <= this.base) throw this.fail('PICKLE_STACK', at, 'stack underflow');
    return this.stack.pop() as PyNode;
  }

  protected top(at: number): PyNode {
    if (this.stack.length <= this.base) throw this.fail('PICKLE_STACK', at, 'stack underflow');
    return this.stack[this.stack.length - 1];
  }

  protected popN(n: number, at: number): PyNode[] {
    if (this.stack.length - this.base < n) throw this.fail('PICKLE_STACK', at, 'stack underflow');
    return this.stack.splice(this.stack.length - n, n);
  }

  protected popMark(at: number): PyNode[] {
    const mark = this.marks.pop();
    if (mark === undefined) throw this.fail('PICKLE_STACK', at, 'no MARK to pop to');
    this.base = this.marks.length > 0 ? this.marks[this.marks.length - 1] : 0;
    return this.stack.splice(mark);
  }

  protected pairsInto(items: PyNode[], into: Array<[PyNode, PyNode]>, at: number): void {
    if (items.length % 2 !== 0)
      throw this.fail('PICKLE_STACK', at, `odd number of items (${items.length}) for key/value pairs`);
    for (let i = 0; i < items.length; i += 2) into.push([items[i], items[i + 1]]);
  }

  protected setItemsTarget(at: number): Array<[PyNode, PyNode]> {
    const target = this.top(at);
    if (target.kind === 'dict') return target.entries;
    if (target.kind === 'object') return (target.setitems ??= []);
    throw this.fail('PICKLE_STACK', at, `cannot set items on a ${target.kind}`);
  }

  // ---- memo ----

  protected put(index: number, at: number): void {
    const node = this.top(at);
    if (this.memo[index] === undefined) {
      if (this.memoSize >= this.limits.maxMemo)
        throw this.fail('PICKLE_LIMIT', at, `more than ${this.limits.maxMemo} memo entries`);
      this.memoSize++;
    }
    this.memo[index] = node;
    node.memo = true;
  }

  protected get(index: number, at: number): void {
    const node = this.memo[index];
    if (node === undefined) throw this.fail('PICKLE_MEMO', at, `memo key ${index} was never stored`);
    this.noteShared(node);
    this.stack.push(node);
  }

  protected noteShared(node: PyNode): void {
    if (isContainer(node)) this.sharedContainer = true;
    else this.leafRefs++;
  }

  // ---- operand readers ----

  protected need(n: number, at: number): void {
    if (n > this.buf.length - this.pos) {
      throw this.fail('PICKLE_TRUNCATED', at, `operand needs ${n} bytes, ${this.buf.length - this.pos} left`);
    }
  }

  /** Check a declared string/bytes length (input first, then limits), consume it, return its start. */
  protected take(n: number, at: number): number {
    this.need(n, at);
    if (n > this.limits.maxStringBytes)
      throw this.fail('PICKLE_LIMIT', at, `string of ${n} bytes exceeds ${this.limits.maxStringBytes}`);
    const s = this.pos;
    this.pos += n;
    return s;
  }

  /** An 8-byte little-endian length. Values past 2**53 are only ever compared against the input size. */
  protected readU64(at: number): number {
    this.need(8, at);
    const lo = this.view.getUint32(this.pos, true);
    const hi = this.view.getUint32(this.pos + 4, true);
    this.pos += 8;
    return hi * 0x1_0000_0000 + lo;
  }

  /** LONG1/LONG4 operand: little-endian two's complement. */
  protected readLong(n: number, at: number): bigint {
    this.need(n, at);
    if (n > this.limits.maxLongBytes)
      throw this.fail('PICKLE_LIMIT', at, `integer of ${n} bytes exceeds ${this.limits.maxLongBytes}`);
    const s = this.pos;
    this.pos += n;
    return decodeLong(this.buf, s, n);
  }

  /** A protocol-0 text line without its '\n', as [start, end). */
  protected readLine(at: number): [number, number] {
    const s = this.pos;
    const nl = this.buf.indexOf(0x0a, s);
    if (nl < 0) throw this.fail('PICKLE_TRUNCATED', at, 'text operand has no terminating newline');
    if (nl - s > this.limits.maxStringBytes)
      throw this.fail('PICKLE_LIMIT', at, `text operand of ${nl - s} bytes exceeds ${this.limits.maxStringBytes}`);
    this.pos = nl + 1;
    return [s, nl];
  }

  protected readLineUtf8(at: number): string {
    const [s, e] = this.readLine(at);
    return this.utf8(s, e, at);
  }

  /** PUT/GET text operand: a non-negative decimal. */
  protected readTextIndex(at: number): number {
    const [s, e] = this.readLine(at);
    const text = this.latin1(s, e);
    if (!/^\d{1,15}$/.test(text))
      throw this.fail('PICKLE_BAD_OPCODE', at, `bad memo index ${JSON.stringify(text.slice(0, 40))}`);
    return Number(text);
  }

  protected readUtf8(n: number, at: number): string {
    const s = this.take(n, at);
    return this.utf8(s, s + n, at);
  }

  // ---- text operands (pyText.ts), a malformed one is PICKLE_BAD_OPCODE ----

  protected latin1(s: number, e: number): string {
    return this.nb.toString('latin1', s, e);
  }

  protected utf8(s: number, e: number, at: number): string {
    const text = decodeUtf8(this.nb, s, e);
    if (text === undefined) throw this.fail('PICKLE_BAD_OPCODE', at, 'string is not valid UTF-8');
    return text;
  }

  protected textInt(s: number, e: number, at: number): bigint {
    if (e - s > this.limits.maxLongBytes * 3)
      throw this.fail('PICKLE_LIMIT', at, `integer text of ${e - s} bytes is too long`);
    return this.decodeText(parseTextInt, s, e, at);
  }

  /** One of pyText's codecs on [s, e); what it refuses is PICKLE_BAD_OPCODE at `at`. */
  protected decodeText<T>(decode: (buf: Buffer, s: number, e: number) => T, s: number, e: number, at: number): T {
    try {
      return decode(this.nb, s, e);
    } catch (err) {
      throw err instanceof PyTextError ? this.fail('PICKLE_BAD_OPCODE', at, err.message) : err;
    }
  }
}
