/** The steps of our own read path that `bench:budget`'s child measures one after another (budget-child.ts). */
export const PIPELINE = ['open', 'recognize', 'fingerprint', 'entry', 'kept'];
