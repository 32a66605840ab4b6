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
 * The walk is here; the stack and memo model (bounded by MODEL_LIMITS) is scanModel.ts, operand
 * reading scanCursor.ts, the finding types scanFindings.ts. Cost: linear in the bytes. Nothing is ever
 * executed or imported.
 */
import { decodePickle } from './decoder';
import { describeOpcode, OPCODE_NAMES } from './opcodes';
import { StuckError, u32le as importedU32le } from './scanCursor';
import type { PickleScan, ScanOptions } from './scanFindings';
import { MODEL_LIMITS as IMPORTED_LIMITS, ScanModel, TAGS } from './scanModel';

export type { PickleScan, ScannedName, ScanOptions, Tampering, Unresolved } from './scanFindings';
export { MODEL_LIMITS } from './scanModel';

// Module-local bindings of what the opcode walk uses on every opcode: run from source (tsx, mocha) an
// imported binding is a getter call on each use, which made the walk ~40% slower; bundled it is the same.
const { OTHER, STR, GLOB, BUILT, UNKNOWN } = TAGS;
const MODEL_LIMITS = IMPORTED_LIMITS;
const u32le = importedU32le;

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

export function scanPickles(buf: Uint8Array, opts: ScanOptions = {}): PickleScan {
  return new Scanner(buf, opts.maxPickles ?? Number.POSITIVE_INFINITY).run();
}

class Scanner extends ScanModel {
  /** Name key -> index in out.names. */
  private readonly seen = new Map<string, number>();
  private pickleStart = 0;

  constructor(
    buf: Uint8Array,
    private readonly maxPickles: number,
  ) {
    super(buf);
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
}

const STOP_BYTE = Buffer.from([0x2e]);
