/**
 * A checkpoint's object (or a safetensors file's `__metadata__`) as a display tree for the
 * inspector: plain JSON (it crosses the LSP connection), Python types named as Python names them,
 * values as short text. Bounded, so a pathological pickle cannot make a huge page: at most
 * MAX_CHILDREN children per container and MAX_NODES nodes in all (the rest counted in `more`),
 * strings cut at MAX_TEXT characters. Nothing is instantiated: an unknown object is its callable's
 * name with its arguments and state as children.
 */
import { type PyNode, mappingEntries } from '../../formats/pickle/nodes';
import { interpret } from '../../formats/pyValue';
import type { MetaNode } from '../../protocol/inspect';

export const MAX_CHILDREN = 200;
export const MAX_NODES = 5000;
export const MAX_TEXT = 2000;

/** How tensors inside the tree are shown (the checkpoint knows dtype, shape and digest). */
export type TensorLabel = (n: PyNode) => { type: 'tensor' | 'Parameter'; value: string } | undefined;

export function pyFloatText(f: number): string {
  if (Number.isNaN(f)) return 'nan';
  if (!Number.isFinite(f)) return f > 0 ? 'inf' : '-inf';
  if (Object.is(f, -0)) return '-0.0';
  const s = String(f);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

function cut(s: string): { value: string; more?: number } {
  return s.length > MAX_TEXT ? { value: s.slice(0, MAX_TEXT), more: s.length - MAX_TEXT } : { value: s };
}

function numpyText(dtype: string, raw: Uint8Array): string {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const n = raw.length;
  if (dtype === 'float64' && n === 8) return pyFloatText(dv.getFloat64(0, true));
  if (dtype === 'float32' && n === 4) return pyFloatText(dv.getFloat32(0, true));
  if (dtype === 'int64' && n === 8) return dv.getBigInt64(0, true).toString();
  if (dtype === 'int32' && n === 4) return String(dv.getInt32(0, true));
  if (dtype === 'bool' && n === 1) return raw[0] ? 'True' : 'False';
  return Buffer.from(raw).toString('hex');
}

function bytesText(b: Uint8Array): string {
  const hex = Buffer.from(b.buffer, b.byteOffset, Math.min(b.byteLength, 32)).toString('hex');
  return `${b.byteLength} bytes${b.byteLength ? `: ${hex}${b.byteLength > 32 ? '…' : ''}` : ''}`;
}

/** A short Python-like text for a mapping key. */
function keyText(k: PyNode): string {
  switch (k.kind) {
    case 'str':
      return k.value;
    case 'int':
      return k.value.toString();
    case 'float':
      return pyFloatText(k.value);
    case 'bool':
      return k.value ? 'True' : 'False';
    case 'none':
      return 'None';
    default:
      return `<${k.kind}>`;
  }
}

const globalName = (n: PyNode) => (n.kind === 'global' ? `${n.module}.${n.name}` : `<${n.kind}>`);

class Builder {
  nodes = 0;
  constructor(private readonly tensor?: TensorLabel) {}

  node(n: PyNode, key?: string): MetaNode {
    this.nodes++;
    const base = key === undefined ? {} : { key };
    const t = this.tensor?.(n);
    if (t) return { ...base, ...t };
    switch (n.kind) {
      case 'none':
        return { ...base, type: 'None', value: 'None' };
      case 'bool':
        return { ...base, type: 'bool', value: n.value ? 'True' : 'False' };
      case 'int':
        return { ...base, type: 'int', value: n.value.toString() };
      case 'float':
        return { ...base, type: 'float', value: pyFloatText(n.value) };
      case 'str':
        return { ...base, type: 'str', ...cut(n.value) };
      case 'bytes':
        return { ...base, type: n.bytearray ? 'bytearray' : 'bytes', value: bytesText(n.value) };
      case 'list':
        return this.seq({ ...base, type: 'list' }, n.items);
      case 'tuple':
        return this.seq({ ...base, type: 'tuple' }, n.items);
      case 'set':
        return this.seq({ ...base, type: n.frozen ? 'frozenset' : 'set' }, n.items);
      case 'dict':
        return this.map({ ...base, type: 'dict' }, n.entries);
      case 'global':
        return { ...base, type: 'global', value: globalName(n) };
      case 'persid':
        return { ...base, type: 'persistent id', value: '' };
      case 'object': {
        const i = interpret(n);
        if (i?.kind === 'bytes') return { ...base, type: 'bytes', value: bytesText(i.value) };
        if (i?.kind === 'set') return this.seq({ ...base, type: i.frozen ? 'frozenset' : 'set' }, i.items);
        if (i?.kind === 'numpy_scalar') return { ...base, type: `numpy.${i.dtype}`, value: numpyText(i.dtype, i.raw) };
        if (i?.kind === 'datetime') return { ...base, type: 'datetime', value: i.iso };
        if (i?.kind === 'ordereddict') return this.map({ ...base, type: 'OrderedDict' }, i.entries);
        const parts: Array<[string, PyNode]> = [['args', n.args]];
        if (n.kwargs) parts.push(['kwargs', n.kwargs]);
        if (n.state) parts.push(['state', n.state]);
        const out: MetaNode = { ...base, type: globalName(n.callable), children: [] };
        for (const [k, v] of parts) if (this.room(out)) out.children!.push(this.node(v, k));
        if (n.appends?.length && this.room(out))
          out.children!.push(this.seq({ key: 'items', type: 'list' }, n.appends));
        if (n.setitems?.length && this.room(out))
          out.children!.push(this.map({ key: 'entries', type: 'dict' }, n.setitems));
        return out;
      }
    }
  }

  private room(out: MetaNode): boolean {
    if (this.nodes < MAX_NODES && (out.children?.length ?? 0) < MAX_CHILDREN) return true;
    out.more = (out.more ?? 0) + 1;
    return false;
  }

  seq(out: MetaNode, items: PyNode[]): MetaNode {
    out.children = [];
    out.value = `${items.length} item${items.length === 1 ? '' : 's'}`;
    items.forEach((x, i) => {
      if (this.room(out)) out.children!.push(this.node(x, String(i)));
    });
    return out;
  }

  map(out: MetaNode, entries: Array<[PyNode, PyNode]>): MetaNode {
    out.children = [];
    out.value = `${entries.length} key${entries.length === 1 ? '' : 's'}`;
    for (const [k, v] of entries) if (this.room(out)) out.children.push(this.node(v, keyText(k)));
    return out;
  }
}

/** The tree of a torch checkpoint's object; `collapse` maps a top-level key to a summary shown instead of its subtree. */
export function metaTreeOf(
  root: PyNode,
  tensor?: TensorLabel,
  collapse?: (key: string, v: PyNode) => string | undefined,
): MetaNode {
  const b = new Builder(tensor);
  const entries = mappingEntries(root);
  if (!entries) return b.node(root);
  const out: MetaNode = {
    type: root.kind === 'dict' ? 'dict' : 'OrderedDict',
    value: `${entries.length} key${entries.length === 1 ? '' : 's'}`,
    children: [],
  };
  for (const [k, v] of entries) {
    const key = keyText(k);
    const summary = collapse?.(key, v);
    if (summary !== undefined) {
      b.nodes++;
      out.children!.push({
        key,
        type: v.kind === 'dict' ? 'dict' : globalName(v.kind === 'object' ? v.callable : v),
        value: summary,
      });
    } else out.children!.push(b.node(v, key));
  }
  return out;
}

/** A safetensors `__metadata__` (a map of strings). */
export function metaTreeOfStrings(md: Record<string, string>): MetaNode {
  const keys = Object.keys(md);
  const children = keys.slice(0, MAX_NODES).map((k) => ({ key: k, type: 'str', ...cut(md[k]) }));
  return {
    type: 'dict',
    value: `${keys.length} key${keys.length === 1 ? '' : 's'}`,
    children,
    ...(keys.length > MAX_NODES ? { more: keys.length - MAX_NODES } : {}),
  };
}
