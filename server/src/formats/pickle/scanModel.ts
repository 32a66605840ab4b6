/**
 * The safety scan's model of the unpickler's stack and memo: one small tag per value (a string literal
 * keeps where its opcode is, decoded only when a STACK_GLOBAL takes it), bounded by MODEL_LIMITS.
 * Memory: at most a few numbers per opcode (every push or memo entry consumes a byte of input).
 */
import { OPCODE_NAMES } from './opcodes';
import { ScanCursor } from './scanCursor';
import type { PickleScan } from './scanFindings';

// Value tags of the stack model.
export const OTHER = 0; // literals, containers, persistent ids: nothing to call or import
export const STR = 1; // a str literal; aux = its opcode's offset, aux2 = the offset after it
export const GLOB = 2; // what GLOBAL/STACK_GLOBAL/EXT produced; aux = index in names, -1 unresolved
export const BUILT = 3; // what a call returned: may be anything at run time (a str, a callable)
/**
 * Lost by the model: only after an error Python raises (underflow, a memo key never stored), so
 * nothing after it in this pickle runs; calls and STACK_GLOBALs of it are not findings.
 */
export const UNKNOWN = 4;
/** The tags as one object, for a module that copies them into its own consts (see safetyScan.ts). */
export const TAGS = { OTHER, STR, GLOB, BUILT, UNKNOWN } as const;

/**
 * The model's bounds: values on the stack, open MARKs, memo entries (the decoder refuses pickles past
 * its own, smaller limits). Past one, the model stops (a finding: what follows cannot be traced) and the
 * scan goes on naming GLOBAL/INST names: memory stays a few tens of MB whatever the input.
 */
export const MODEL_LIMITS = { stack: 1 << 21, marks: 1 << 20, memo: 1 << 21 };

export abstract class ScanModel extends ScanCursor {
  // The stack model: three numbers per value (tag, aux, aux2) in one Int32Array grown by doubling,
  // `sp` values deep.
  protected st = new Int32Array(192);
  protected sp = 0;
  protected marks: number[] = [];
  // The memo, kept across pickles as one Unpickler does: three numbers per index (tag + 1, aux, aux2) in
  // an Int32Array for indices up to the input's length (a real pickle's are), a Map for the rest (a
  // hostile index costs one entry, never a huge array).
  protected mem = new Int32Array(0);
  protected readonly sparse = new Map<number, [number, number, number]>();
  protected memoCount = 0;
  protected readonly out: PickleScan = { names: [], unresolved: [], tampering: [], pickles: [], errors: [], end: 0 };
  protected pickleError = false;
  /** Set once a bound of MODEL_LIMITS is passed: the model is off, names are still read. */
  protected capped = false;

  protected base(): number {
    return this.marks.length ? this.marks[this.marks.length - 1] : 0;
  }

  /** Past a bound the model stops: one finding (nothing after can be traced), then names only. */
  protected cap(at: number, what: string): void {
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

  protected push(t: number, a: number, b: number): void {
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

  protected tagAt(slot: number): number {
    return this.st[3 * slot];
  }
  protected auxAt(slot: number): number {
    return this.st[3 * slot + 1];
  }
  protected aux2At(slot: number): number {
    return this.st[3 * slot + 2];
  }

  protected pop(at: number): void {
    if (this.sp > this.base()) this.sp--;
    else this.error(at, 'stack underflow');
  }

  /** Pops the top and returns its slot index (valid until the next push), or -1 on underflow. */
  protected popSlot(at: number): number {
    if (this.sp > this.base()) return --this.sp;
    this.error(at, 'stack underflow');
    return -1;
  }

  protected popMark(at: number): void {
    const m = this.marks.pop();
    if (m === undefined) this.error(at, 'no MARK');
    else this.sp = m;
  }

  protected putMemo(index: number, at: number): void {
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

  protected getMemo(index: number, at: number): void {
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
  protected error(at: number, why: string): void {
    if (this.pickleError || this.capped) return;
    this.pickleError = true;
    this.out.errors.push({ at, why });
  }
}
