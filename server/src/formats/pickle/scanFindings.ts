/** What the safety scan (safetyScan.ts) reports about a pickle stream: names, what it could not name, tampering. */

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
