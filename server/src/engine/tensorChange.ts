/**
 * How a copy's tensor compares with its source's tensor of the same name: the one classification
 * behind the copy's status (statusRules.ts) and the inspector's per-tensor diff (tensorDiff.ts).
 * Shape is judged first, then dtype, then the digest of the bytes.
 */

/** What both the index entries and the inspector's tensor lists know of a tensor. */
export interface TensorFacts {
  dtype: string;
  shape: readonly number[];
  digest: string;
}

export type TensorChange = 'equal' | 'differs' | 'shape' | 'dtype';

export function tensorChange(copy: TensorFacts, source: TensorFacts): TensorChange {
  if (copy === source) return 'equal';
  const a = copy.shape;
  const b = source.shape;
  if (a.length !== b.length) return 'shape';
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return 'shape';
  if (copy.dtype !== source.dtype) return 'dtype';
  return copy.digest === source.digest ? 'equal' : 'differs';
}
