/**
 * Typed errors for everything under formats/. Callers branch on `code`, never on message text.
 * A FormatError always means "this input is bad"; any other thrown error is a bug or an I/O failure.
 */
export type FormatErrorCode =
  // container
  | 'EMPTY_FILE'
  | 'NOT_A_CHECKPOINT' // neither zip, legacy torch pickle, nor safetensors
  | 'ZIP_TRUNCATED' // end records or a record run past the end of the file
  | 'ZIP_BAD_STRUCTURE' // signatures, counts, offsets or sizes that do not agree
  | 'ZIP_UNSUPPORTED' // encryption, an unknown compression method, multi-disk
  | 'ZIP_DUPLICATE_NAME'
  | 'ZIP_OVERLAP' // two records claim the same bytes
  | 'CRC_MISMATCH'
  | 'MISSING_RECORD' // data.pkl, version, or a storage record is absent
  // pickle
  | 'PICKLE_TRUNCATED'
  | 'PICKLE_BAD_OPCODE'
  | 'PICKLE_STACK' // stack underflow, missing MARK, wrong types for an opcode
  | 'PICKLE_MEMO' // GET of an unknown memo key
  | 'PICKLE_LIMIT' // depth, nodes, memo, string or LONG size over the reader's limits
  // checkpoint
  | 'BAD_TENSOR' // a tensor rebuild call whose arguments make no sense
  | 'BAD_VERSION'
  | 'TRAILING_DATA' // bytes after data.pkl's STOP or after a legacy file's last storage (torch.save writes none)
  // safetensors
  | 'SAFETENSORS_BAD_HEADER'
  | 'SAFETENSORS_BAD_TENSOR';

export class FormatError extends Error {
  override readonly name = 'FormatError';
  /**
   * What the safety scan found in a file that then could not be read (formats/safety.ts findings):
   * a file that breaks after its payload is still unsafe, and that outranks the error.
   */
  unsafe?: ReadonlyArray<{ type: 'UNSAFE_GLOBAL' | 'NAMESPACE_TAMPERING'; global: string; detail: string }>;
  constructor(
    readonly code: FormatErrorCode,
    message: string,
    /** Name of the zip record or tensor the error is about, when there is one. */
    readonly where?: string,
  ) {
    super(message);
  }
}

export function isFormatError(e: unknown): e is FormatError {
  return e instanceof FormatError;
}
