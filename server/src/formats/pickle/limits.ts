/**
 * Resource limits for the pickle decoder. A pickle is untrusted input: every count or length it
 * declares is checked against these before anything is allocated, so a hostile file fails with
 * FormatError('PICKLE_LIMIT') instead of exhausting memory or the call stack of later consumers.
 */
export interface PickleLimits {
  /** Nodes created while decoding, and nodes of the tree once shared (memo GET) subtrees are expanded. */
  maxNodes: number;
  /** Longest root-to-leaf path of the decoded tree (the root alone has depth 1). */
  maxDepth: number;
  /** Distinct memo entries (PUT/BINPUT/LONG_BINPUT/MEMOIZE). */
  maxMemo: number;
  /** Byte length of one str/bytes operand, and of one text line (protocol 0). */
  maxStringBytes: number;
  /** Byte length of one LONG1/LONG4 operand (or of the digits of a text INT/LONG). */
  maxLongBytes: number;
  /** Values on the stack, marks included. */
  maxStack: number;
  /** Open MARKs. */
  maxMarks: number;
}

export const DEFAULT_PICKLE_LIMITS: Readonly<PickleLimits> = Object.freeze({
  maxNodes: 5_000_000,
  maxDepth: 500,
  maxMemo: 1_000_000,
  maxStringBytes: 256 * 1024 * 1024,
  maxLongBytes: 1024,
  maxStack: 1_000_000,
  maxMarks: 100_000,
});

export function resolveLimits(opts?: Partial<PickleLimits>): PickleLimits {
  return { ...DEFAULT_PICKLE_LIMITS, ...opts };
}
