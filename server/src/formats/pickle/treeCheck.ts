/**
 * The decoder's post-pass, run after STOP when the tree may share containers: rejects cycles, trees
 * deeper than maxDepth and trees whose memo-expanded size exceeds maxNodes ("billion laughs"), so
 * that consumers may walk the result recursively.
 */
import { FormatError } from '../errors';
import type { PickleLimits } from './limits';
import type { PyNode, PyObject, PyPersId } from './nodes';

/** Children of an object or persid node (rare kinds: flattening them is cheap enough). */
function otherChildren(n: PyObject | PyPersId): PyNode[] {
  if (n.kind === 'persid') return [n.pid];
  const out: PyNode[] = [n.callable, n.args];
  if (n.kwargs) out.push(n.kwargs);
  if (n.appends) for (const a of n.appends) out.push(a);
  if (n.setitems) for (const [k, v] of n.setitems) out.push(k, v);
  if (n.state) out.push(n.state);
  if (n.extraStates) for (const s of n.extraStates) out.push(s);
  return out;
}

/** Number of children of a container; -1 for leaves. */
function childCount(n: PyNode, others: PyNode[] | undefined): number {
  switch (n.kind) {
    case 'list':
    case 'tuple':
    case 'set':
      return n.items.length;
    case 'dict':
      return n.entries.length * 2;
    case 'object':
    case 'persid':
      return (others as PyNode[]).length;
    default:
      return -1;
  }
}

function childAt(n: PyNode, i: number, others: PyNode[] | undefined): PyNode {
  switch (n.kind) {
    case 'list':
    case 'tuple':
    case 'set':
      return n.items[i];
    case 'dict':
      return n.entries[i >> 1][i & 1];
    default:
      return (others as PyNode[])[i];
  }
}

export function isContainer(n: PyNode): boolean {
  switch (n.kind) {
    case 'list':
    case 'tuple':
    case 'set':
    case 'dict':
    case 'object':
    case 'persid':
      return true;
    default:
      return false;
  }
}

/**
 * Iterative DFS over the DAG. Each shared container's expanded size (a node reached k times counts
 * k times) and depth are computed once and reused, so a memo bomb costs time linear in the input.
 * Only nodes that can be reached twice — memoized ones and DUP'ed ones — need bookkeeping: any
 * cycle has to pass through such a node.
 */
export function checkTree(root: PyNode, limits: PickleLimits, end: number, duplicated: Set<PyNode>): void {
  const fail = (msg: string) =>
    new FormatError('PICKLE_LIMIT', `pickle: ${msg} (checked after STOP at offset ${end - 1})`);
  const tooMany = () => fail(`more than ${limits.maxNodes} nodes once shared references are expanded`);
  if (!isContainer(root)) return;
  const cap = limits.maxNodes + 1;
  /** Shared nodes only: -1 while on the DFS path (gray), else an index into doneSize/doneDepth. */
  const state = new Map<PyNode, number>();
  const doneSize: number[] = [];
  const doneDepth: number[] = [];
  // The DFS path, one entry per frame.
  const nodes: PyNode[] = [];
  const others: Array<PyNode[] | undefined> = [];
  const counts: number[] = [];
  const next: number[] = [];
  const accSize: number[] = [];
  const accDepth: number[] = [];
  const anyDup = duplicated.size > 0;

  const enter = (n: PyNode): void => {
    if (nodes.length >= limits.maxDepth) throw fail(`nesting deeper than ${limits.maxDepth}`);
    if (n.memo === true || (anyDup && duplicated.has(n))) state.set(n, -1);
    const o = n.kind === 'object' || n.kind === 'persid' ? otherChildren(n) : undefined;
    nodes.push(n);
    others.push(o);
    counts.push(childCount(n, o));
    next.push(0);
    accSize.push(0);
    accDepth.push(0);
  };
  enter(root);
  while (nodes.length > 0) {
    const top = nodes.length - 1;
    const i = next[top];
    if (i < counts[top]) {
      next[top] = i + 1;
      const child = childAt(nodes[top], i, others[top]);
      let size = 1;
      let depth = 1;
      if (isContainer(child)) {
        const s = child.memo === true || (anyDup && duplicated.has(child)) ? state.get(child) : undefined;
        if (s === undefined) {
          enter(child);
          continue;
        }
        if (s === -1) throw fail('cyclic structure (a container contains itself)');
        size = doneSize[s];
        depth = doneDepth[s];
      }
      accSize[top] = Math.min(cap, accSize[top] + size);
      if (depth > accDepth[top]) accDepth[top] = depth;
      if (accSize[top] >= cap) throw tooMany();
      continue;
    }
    // All children done: finish this node and report it to its parent.
    const size = Math.min(cap, 1 + accSize[top]);
    const depth = 1 + accDepth[top];
    if (size >= cap) throw tooMany();
    if (depth > limits.maxDepth) throw fail(`nesting deeper than ${limits.maxDepth}`);
    const node = nodes[top];
    if (node.memo === true || (anyDup && duplicated.has(node))) {
      state.set(node, doneSize.length);
      doneSize.push(size);
      doneDepth.push(depth);
    }
    nodes.pop();
    others.pop();
    counts.pop();
    next.pop();
    accSize.pop();
    accDepth.pop();
    if (top > 0) {
      const p = top - 1;
      accSize[p] = Math.min(cap, accSize[p] + size);
      if (depth > accDepth[p]) accDepth[p] = depth;
      if (accSize[p] >= cap) throw tooMany();
    }
  }
}
