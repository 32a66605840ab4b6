/**
 * The safety scan: one pass over the opcode stream, independent of the decoder. Python's unpickler
 * executes opcode by opcode, so a payload runs before a later error; this scan therefore does not stop
 * at the first error the decoder would raise. It steps over every opcode whose length it knows, to
 * the end of the bytes (or `maxPickles` STOPs), and after a STOP with bytes left it goes on as a
 * further pickle (loaders that read pickles until the end of the stream would run those too).
 *
 * It records every name a GLOBAL, STACK_GLOBAL or INST imports (OBJ, REDUCE, NEWOBJ call what is on
 * the stack: a name recorded there, or something it cannot name, which is a finding), and every
 * mutation (BUILD, SETITEM(S), APPEND(S), ADDITEMS) of an object a global produced: a module, class or
 * function whose namespace could be rewritten for a later, allowlisted-looking name.
 *
 * To follow STACK_GLOBAL operands it keeps a model of the stack and the memo, one small tag per value
 * (a string literal keeps where its opcode is, decoded only when a STACK_GLOBAL takes it). Cost: linear
 * in the bytes; memory: at most a few numbers per opcode (every push or memo entry consumes a byte).
 * Nothing is ever executed or imported.
 */
import { decodePickle } from './decoder';
import { describeOpcode, OPCODE_NAMES } from './opcodes';

export interface ScannedName {
  module: string;
  name: string;
  /** The opcode that imports it and its offset in the scanned bytes. */
  op: 'GLOBAL' | 'STACK_GLOBAL' | 'INST';
  at: number;
}

/** Something the scan could not name: a call or import whose target is computed, not written. */
export interface Unresolved {
  op: string;
  at: number;
  why: string;
}

/** A mutation of what a global produced. `target` is the global's name (or `?` when unresolved). */
export interface Tampering {
  op: string;
  at: number;
  target: string;
}

export interface PickleScan {
  /** Every distinct name imported, first-seen order. */
  names: ScannedName[];
  unresolved: Unresolved[];
  tampering: Tampering[];
  /** Complete pickles: where each starts and the offset just after its STOP. */
  pickles: Array<{ start: number; end: number }>;
  /** The first opcode the scan could not step past (bytes after it were not scanned), if any. */
  stuck?: { at: number; why: string; truncated: boolean };
  /** Where each pickle hit its first error Python would raise (the scan went on past it). */
  errors: Array<{ at: number; why: string }>;
  /** Offset where the scan ended. */
  end: number;
}

export interface ScanOptions {
  /** Stop after this many complete pickles (torch's legacy loader unpickles five). */
  maxPickles?: number;
}

// Value tags of the stack model.
const OTHER = 0; // literals, containers, persistent ids: nothing to call or import
const STR = 1; // a str literal; aux = its opcode's offset, aux2 = the offset after it
const GLOB = 2; // what GLOBAL/STACK_GLOBAL/EXT produced; aux = index in names, -1 unresolved
const BUILT = 3; // what a call returned: may be anything at run time (a str, a callable)
/**
 * Lost by the model: only after an error Python raises (underflow, a memo key never stored), so
 * nothing after it in this pickle runs; calls and STACK_GLOBALs of it are not findings.
 */
const UNKNOWN = 4;

/**
 * The model's bounds: values on the stack, open MARKs, memo entries (the decoder refuses pickles past
 * its own, smaller limits). Past one, the model stops (a finding: what follows cannot be traced) and the
 * scan goes on naming GLOBAL/INST names: memory stays a few tens of MB whatever the input.
 */
export const MODEL_LIMITS = { stack: 1 << 21, marks: 1 << 20, memo: 1 << 21 };

/** Operand width of fixed-size opcodes; 0 for opcodes without operands or with other operand shapes. */
const FIXED = new Uint8Array(256);
for (const [op, n] of [
  [0x4b, 1], // BININT1
  [0x4d, 2], // BININT2
  [0x4a, 4], // BININT
  [0x47, 8], // BINFLOAT
  [0x71, 1], // BINPUT
  [0x72, 4], // LONG_BINPUT
  [0x68, 1], // BINGET
  [0x6a, 4], // LONG_BINGET
  [0x80, 1], // PROTO
  [0x82, 1], // EXT1
  [0x83, 2], // EXT2
  [0x84, 4], // EXT4
  [0x95, 8], // FRAME
] as const)
  FIXED[op] = n;

const UTF8 = new TextDecoder('utf-8', { fatal: true });

class StuckError {
  constructor(
    readonly at: number,
    readonly why: string,
    readonly truncated: boolean,
  ) {}
}

export function scanPickles(buf: Uint8Array, opts: ScanOptions = {}): PickleScan {
  return new Scanner(buf, opts.maxPickles ?? Number.POSITIVE_INFINITY).run();
}

class Scanner {
  private pos = 0;
  private readonly nb: Buffer;
  // The stack model: three numbers per value (tag, aux, aux2) in one Int32Array grown by doubling,
  // `sp` values deep.
  private st = new Int32Array(192);
  private sp = 0;
  private marks: number[] = [];
  // The memo, kept across pickles as one Unpickler does: three numbers per index (tag + 1, aux, aux2) in
  // an Int32Array for indices up to the input's length (a real pickle's are), a Map for the rest (a
  // hostile index costs one entry, never a huge array).
  private mem = new Int32Array(0);
  private readonly sparse = new Map<number, [number, number, number]>();
  private memoCount = 0;
  private readonly out: PickleScan = { names: [], unresolved: [], tampering: [], pickles: [], errors: [], end: 0 };
  /** Name key -> index in out.names. */
  private readonly seen = new Map<string, number>();
  private pickleStart = 0;
  private pickleError = false;
  /** Set once a bound of MODEL_LIMITS is passed: the model is off, names are still read. */
  private capped = false;

  constructor(
    private readonly buf: Uint8Array,
    private readonly maxPickles: number,
  ) {
    this.nb = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  run(): PickleScan {
    try {
      this.loop();
    } catch (e) {
      if (!(e instanceof StuckError)) throw e;
      this.out.stuck = { at: e.at, why: e.why, truncated: e.truncated };
      this.pos = e.at;
    }
    this.out.end = this.pos;
    return this.out;
  }

  private loop(): void {
    const buf = this.buf;
    const len = buf.length;
    while (this.pos < len) {
      const at = this.pos;
      const op = buf[this.pos++];
      const fixed = FIXED[op];
      if (fixed) {
        if (fixed > len - this.pos) throw new StuckError(at, `${describeOpcode(op)} operand runs past the end`, true);
        this.fixedOp(op, at);
        this.pos += fixed;
        continue;
      }
      switch (op) {
        case 0x28: // MARK
          if (this.marks.length >= MODEL_LIMITS.marks) this.cap(at, 'open MARKs');
          if (!this.capped) this.marks.push(this.sp);
          break;
        case 0x2e: // STOP
          this.pop(at);
          this.out.pickles.push({ start: this.pickleStart, end: this.pos });
          if (this.out.pickles.length >= this.maxPickles) return;
          // A further pickle: a fresh stack; the memo stays, as a reused Unpickler keeps it.
          this.sp = 0;
          this.marks = [];
          this.pickleStart = this.pos;
          this.pickleError = false;
          break;
        case 0x30: // POP: an empty frame above a MARK pops the MARK (as CPython does)
          if (this.sp > this.base()) this.sp--;
          else if (this.marks.length) this.marks.pop();
          else this.error(at, 'stack underflow');
          break;
        case 0x31: // POP_MARK
          this.popMark(at);
          break;
        case 0x32: // DUP
          if (this.sp > this.base())
            this.push(this.tagAt(this.sp - 1), this.auxAt(this.sp - 1), this.aux2At(this.sp - 1));
          else {
            this.error(at, 'stack underflow');
            this.push(UNKNOWN, 0, 0);
          }
          break;
        // Literals without operands.
        case 0x4e: // NONE
        case 0x88: // NEWTRUE
        case 0x89: // NEWFALSE
        case 0x29: // EMPTY_TUPLE
        case 0x5d: // EMPTY_LIST
        case 0x7d: // EMPTY_DICT
        case 0x8f: // EMPTY_SET
          this.push(OTHER, 0, 0);
          break;
        // Text-line operands.
        case 0x49: // INT
        case 0x4c: // LONG
        case 0x46: // FLOAT
          this.line(at);
          this.push(OTHER, 0, 0);
          break;
        case 0x53: // STRING
        case 0x56: // UNICODE
          this.line(at);
          this.push(STR, at, this.pos);
          break;
        case 0x50: // PERSID: the loader's persistent_load (torch: a storage), never a name
          this.line(at);
          this.push(OTHER, 0, 0);
          break;
        case 0x70: // PUT
          this.putMemo(this.lineIndex(at), at);
          break;
        case 0x67: // GET
          this.getMemo(this.lineIndex(at), at);
          break;
        // Length-prefixed operands.
        case 0x8c: // SHORT_BINUNICODE
        case 0x55: // SHORT_BINSTRING
          this.skip(this.u8(at), at);
          this.push(STR, at, this.pos);
          break;
        case 0x43: // SHORT_BINBYTES
        case 0x8a: // LONG1
          this.skip(this.u8(at), at);
          this.push(OTHER, 0, 0);
          break;
        case 0x58: // BINUNICODE
          this.skip(this.u32(at), at);
          this.push(STR, at, this.pos);
          break;
        case 0x54: // BINSTRING (signed length)
          this.skip(this.i32(at), at);
          this.push(STR, at, this.pos);
          break;
        case 0x42: // BINBYTES
          this.skip(this.u32(at), at);
          this.push(OTHER, 0, 0);
          break;
        case 0x8b: // LONG4 (signed length)
          this.skip(this.i32(at), at);
          this.push(OTHER, 0, 0);
          break;
        case 0x8d: // BINUNICODE8
          this.skip(this.u64(at), at);
          this.push(STR, at, this.pos);
          break;
        case 0x8e: // BINBYTES8
        case 0x96: // BYTEARRAY8
          this.skip(this.u64(at), at);
          this.push(OTHER, 0, 0);
          break;
        case 0x97: // NEXT_BUFFER: Python raises without out-of-band buffers
          this.error(at, 'out-of-band buffer');
          this.push(OTHER, 0, 0);
          break;
        case 0x98: // READONLY_BUFFER: the top stays
          break;
        case 0x94: // MEMOIZE: the next index is the memo's size
          this.putMemo(this.memoCount, at);
          break;
        // Containers.
        case 0x6c: // LIST
        case 0x74: // TUPLE
        case 0x64: // DICT
        case 0x91: // FROZENSET
          this.popMark(at);
          this.push(OTHER, 0, 0);
          break;
        case 0x85: // TUPLE1
        case 0x86: // TUPLE2
        case 0x87: // TUPLE3
          for (let i = op - 0x84; i > 0; i--) this.pop(at);
          this.push(OTHER, 0, 0);
          break;
        // Mutations: of a container they build data; of what a global produced, they rewrite a namespace.
        case 0x61: // APPEND
        case 0x62: // BUILD
          this.pop(at);
          this.mutate(op, at);
          break;
        case 0x73: // SETITEM
          this.pop(at);
          this.pop(at);
          this.mutate(op, at);
          break;
        case 0x65: // APPENDS
        case 0x75: // SETITEMS
        case 0x90: // ADDITEMS
          this.popMark(at);
          this.mutate(op, at);
          break;
        case 0x51: // BINPERSID
          this.pop(at);
          this.push(OTHER, 0, 0);
          break;
        // Imports and calls.
        case 0x63: // GLOBAL
        case 0x69: {
          // INST
          const module = this.nameLine(at, op === 0x69);
          const name = this.nameLine(at, op === 0x69);
          const idx = module !== undefined && name !== undefined ? this.record(module, name, op, at) : undefined;
          if (idx === undefined) this.error(at, 'a name Python cannot decode or import');
          if (op === 0x63) this.push(idx === undefined ? UNKNOWN : GLOB, idx ?? 0, 0);
          else {
            this.popMark(at);
            this.push(BUILT, 0, 0);
          }
          break;
        }
        case 0x93: // STACK_GLOBAL
          this.stackGlobal(at);
          break;
        case 0x52: // REDUCE
          this.pop(at);
          this.call(this.popSlot(at), op, at);
          break;
        case 0x81: // NEWOBJ
          this.pop(at);
          this.call(this.popSlot(at), op, at);
          break;
        case 0x92: // NEWOBJ_EX
          this.pop(at);
          this.pop(at);
          this.call(this.popSlot(at), op, at);
          break;
        case 0x6f: {
          // OBJ: the class is the first value after the MARK
          const m = this.marks.length ? this.marks[this.marks.length - 1] : -1;
          const cls = m >= 0 && this.sp > m ? m : -1;
          const t = cls >= 0 ? this.tagAt(cls) : UNKNOWN;
          this.popMark(at);
          if (cls < 0) this.error(at, 'OBJ without a class');
          this.checkCallable(t, op, at);
          this.push(BUILT, 0, 0);
          break;
        }
        default:
          throw new StuckError(at, `${describeOpcode(op)} is not a pickle opcode`, false);
      }
    }
  }

  private fixedOp(op: number, at: number): void {
    const p = this.pos;
    const b = this.buf;
    switch (op) {
      case 0x71: // BINPUT
        this.putMemo(b[p], at);
        return;
      case 0x72: // LONG_BINPUT
        this.putMemo(u32le(b, p), at);
        return;
      case 0x68: // BINGET
        this.getMemo(b[p], at);
        return;
      case 0x6a: // LONG_BINGET
        this.getMemo(u32le(b, p), at);
        return;
      case 0x82: // EXT1..4: a name from copyreg's extension registry, which the file does not say
      case 0x83:
      case 0x84:
        this.out.unresolved.push({ op: OPCODE_NAMES[op]!, at, why: "a name from copyreg's extension registry" });
        this.push(GLOB, -1, 0);
        return;
      case 0x80: // PROTO
        if (b[p] > 5) this.error(at, `protocol ${b[p]}`);
        return;
      case 0x95: // FRAME: its opcodes follow inline
        return;
      default:
        this.push(OTHER, 0, 0); // BININT*, BINFLOAT
    }
  }

  // ---- the stack model ----

  private base(): number {
    return this.marks.length ? this.marks[this.marks.length - 1] : 0;
  }

  /** Past a bound the model stops: one finding (nothing after can be traced), then names only. */
  private cap(at: number, what: string): void {
    if (this.capped) return;
    this.capped = true;
    this.out.unresolved.push({
      op: OPCODE_NAMES[this.buf[at]] ?? 'opcode',
      at,
      why: `the pickle's ${what} exceed what the scan models (${JSON.stringify(MODEL_LIMITS)}), so what follows cannot be traced`,
    });
    this.sp = 0;
    this.marks = [];
    this.st = new Int32Array(0);
    this.mem = new Int32Array(0);
    this.sparse.clear();
  }

  private push(t: number, a: number, b: number): void {
    if (this.capped) return;
    if (this.sp >= MODEL_LIMITS.stack) {
      this.cap(this.pos - 1, 'stack values');
      return;
    }
    const i = 3 * this.sp++;
    if (i >= this.st.length) {
      const grown = new Int32Array(2 * this.st.length); // a push consumes a byte: bounded by the input
      grown.set(this.st);
      this.st = grown;
    }
    const st = this.st;
    st[i] = t;
    st[i + 1] = a;
    st[i + 2] = b;
  }

  private tagAt(slot: number): number {
    return this.st[3 * slot];
  }
  private auxAt(slot: number): number {
    return this.st[3 * slot + 1];
  }
  private aux2At(slot: number): number {
    return this.st[3 * slot + 2];
  }

  private pop(at: number): void {
    if (this.sp > this.base()) this.sp--;
    else this.error(at, 'stack underflow');
  }

  /** Pops the top and returns its slot index (valid until the next push), or -1 on underflow. */
  private popSlot(at: number): number {
    if (this.sp > this.base()) return --this.sp;
    this.error(at, 'stack underflow');
    return -1;
  }

  private popMark(at: number): void {
    const m = this.marks.pop();
    if (m === undefined) this.error(at, 'no MARK');
    else this.sp = m;
  }

  private putMemo(index: number, at: number): void {
    if (this.capped) return;
    if (this.memoCount >= MODEL_LIMITS.memo) {
      this.cap(at, 'memo entries');
      return;
    }
    if (this.sp <= this.base()) {
      this.error(at, 'memo of an empty stack');
      return;
    }
    const top = 3 * (this.sp - 1);
    const st = this.st;
    if (index < 0 || index > this.buf.length) {
      if (!this.sparse.has(index)) this.memoCount++;
      this.sparse.set(index, [st[top], st[top + 1], st[top + 2]]);
      return;
    }
    const m = 3 * index;
    if (m >= this.mem.length) {
      // Doubling as indices come in order (a real pickle's do); an index far past the dense part goes
      // to the Map, so no single opcode can make a large allocation.
      const want = Math.max(192, 2 * this.mem.length);
      if (m + 3 > want) {
        if (!this.sparse.has(index)) this.memoCount++;
        this.sparse.set(index, [st[top], st[top + 1], st[top + 2]]);
        return;
      }
      const grown = new Int32Array(want);
      grown.set(this.mem);
      this.mem = grown;
    }
    const mem = this.mem;
    if (mem[m] === 0) this.memoCount++;
    mem[m] = st[top] + 1; // tag + 1: 0 is "never stored"
    mem[m + 1] = st[top + 1];
    mem[m + 2] = st[top + 2];
  }

  private getMemo(index: number, at: number): void {
    const m = 3 * index;
    const mem = this.mem;
    if (index >= 0 && m < mem.length && mem[m] !== 0) {
      this.push(mem[m] - 1, mem[m + 1], mem[m + 2]);
      return;
    }
    const v = this.sparse.get(index);
    if (v) this.push(v[0], v[1], v[2]);
    else {
      this.error(at, `memo key ${index} was never stored`);
      this.push(UNKNOWN, 0, 0);
    }
  }

  /** An error Python raises here: noted once per pickle; the scan goes on (the payload may be before it). */
  private error(at: number, why: string): void {
    if (this.pickleError || this.capped) return;
    this.pickleError = true;
    this.out.errors.push({ at, why });
  }

  // ---- imports, calls, mutations ----

  private record(module: string, name: string, op: number, at: number): number {
    const key = `${module}\n${name}`;
    const known = this.seen.get(key);
    if (known !== undefined) return known;
    const names = this.out.names;
    this.seen.set(key, names.length);
    names.push({ module, name, op: op === 0x63 ? 'GLOBAL' : op === 0x69 ? 'INST' : 'STACK_GLOBAL', at });
    return names.length - 1;
  }

  private stackGlobal(at: number): void {
    const n = this.popSlot(at);
    const nt = n >= 0 ? this.tagAt(n) : UNKNOWN;
    const na = n >= 0 ? this.auxAt(n) : 0;
    const nb = n >= 0 ? this.aux2At(n) : 0;
    const m = this.popSlot(at);
    const mt = m >= 0 ? this.tagAt(m) : UNKNOWN;
    if (mt === STR && nt === STR) {
      const module = this.strAt(this.auxAt(m), this.aux2At(m));
      const name = this.strAt(na, nb);
      if (module !== undefined && name !== undefined) {
        this.push(GLOB, this.record(module, name, 0x93, at), 0);
        return;
      }
    }
    if (mt === OTHER || nt === OTHER || mt === UNKNOWN || nt === UNKNOWN) {
      // Python raises here (not a str) or already raised earlier in this pickle: nothing is imported.
      this.error(at, 'STACK_GLOBAL of a value that is not a str');
      this.push(UNKNOWN, 0, 0);
      return;
    }
    this.out.unresolved.push({
      op: 'STACK_GLOBAL',
      at,
      why:
        mt === BUILT || nt === BUILT
          ? 'its module or name is computed by a call'
          : 'its module or name is an imported object',
    });
    this.push(GLOB, -1, 0);
  }

  /** The str a STR slot's opcode pushes, decoded by the decoder itself (rare: STACK_GLOBAL only). */
  private strAt(start: number, end: number): string | undefined {
    try {
      const d = decodePickle(Buffer.concat([this.buf.subarray(start, end), STOP_BYTE]));
      return d.root.kind === 'str' ? d.root.value : undefined;
    } catch {
      return undefined;
    }
  }

  private call(slot: number, op: number, at: number): void {
    this.checkCallable(slot >= 0 ? this.tagAt(slot) : UNKNOWN, op, at);
    this.push(BUILT, 0, 0);
  }

  /** A call of what a global produced is judged by that name; a call of anything else is not allowed. */
  private checkCallable(t: number, op: number, at: number): void {
    if (t === GLOB) return;
    if (t !== BUILT) {
      // A literal cannot be called (Python raises); UNKNOWN exists only after Python already raised.
      this.error(at, `${OPCODE_NAMES[op]} of a value that cannot be called`);
      return;
    }
    this.out.unresolved.push({ op: OPCODE_NAMES[op]!, at, why: 'it calls what another call returned' });
  }

  /** The mutation's target is the top after its operands are popped. */
  private mutate(op: number, at: number): void {
    if (this.sp <= this.base()) {
      this.error(at, 'stack underflow');
      return;
    }
    if (this.tagAt(this.sp - 1) !== GLOB) return;
    const i = this.auxAt(this.sp - 1);
    const n = i >= 0 ? this.out.names[i] : undefined;
    this.out.tampering.push({ op: OPCODE_NAMES[op]!, at, target: n ? `${n.module}.${n.name}` : '?' });
  }

  // ---- operands ----

  private skip(n: number, at: number): void {
    if (n < 0) throw new StuckError(at, `${describeOpcode(this.buf[at])} declares a negative length`, false);
    if (n > this.buf.length - this.pos)
      throw new StuckError(at, `${describeOpcode(this.buf[at])} operand runs past the end`, true);
    this.pos += n;
  }

  private need(n: number, at: number): void {
    if (n > this.buf.length - this.pos)
      throw new StuckError(at, `${describeOpcode(this.buf[at])} operand runs past the end`, true);
  }

  private u8(at: number): number {
    this.need(1, at);
    return this.buf[this.pos++];
  }

  private u32(at: number): number {
    this.need(4, at);
    const v = u32le(this.buf, this.pos);
    this.pos += 4;
    return v;
  }

  private i32(at: number): number {
    this.need(4, at);
    const v = u32le(this.buf, this.pos) | 0;
    this.pos += 4;
    return v;
  }

  private u64(at: number): number {
    this.need(8, at);
    const lo = u32le(this.buf, this.pos);
    const hi = u32le(this.buf, this.pos + 4);
    this.pos += 8;
    return hi * 0x1_0000_0000 + lo;
  }

  /** A text line, as [start, end) without its newline. */
  private line(at: number): [number, number] {
    const s = this.pos;
    // A JS loop: names are short, and a native indexOf costs more to call than to run here.
    const b = this.buf;
    let nl = s;
    while (nl < b.length && b[nl] !== 0x0a) nl++;
    if (nl === b.length) nl = -1;
    if (nl < 0) throw new StuckError(at, `${describeOpcode(this.buf[at])} text operand has no newline`, true);
    this.pos = nl + 1;
    return [s, nl];
  }

  private lineIndex(at: number): number {
    const [s, e] = this.line(at);
    const text = this.nb.toString('latin1', s, e);
    return /^\d{1,15}$/.test(text) ? Number(text) : -1;
  }

  /**
   * A GLOBAL/INST name line, decoded as CPython does (UTF-8; ASCII for INST). Undefined when Python
   * could not decode it or would refuse it before importing (empty, or holding a NUL).
   */
  private nameLine(at: number, ascii: boolean): string | undefined {
    const [s, e] = this.line(at);
    if (e === s) return undefined;
    let text: string | undefined;
    let plain = true;
    for (let i = s; i < e; i++) if (this.buf[i] >= 0x80) plain = false;
    if (plain) text = this.nb.toString('latin1', s, e);
    else if (!ascii) {
      try {
        text = UTF8.decode(this.buf.subarray(s, e));
      } catch {
        text = undefined;
      }
    }
    return text?.includes('\0') ? undefined : text;
  }
}

const STOP_BYTE = Buffer.from([0x2e]);

/** A little-endian uint32 (the caller checked the bounds): plain byte arithmetic, no Buffer method. */
function u32le(b: Uint8Array, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16)) + b[p + 3] * 0x1000000;
}
