/**
 * Reading meaning out of pickle nodes: the Python value a node stands for (bytes written as
 * `_codecs.encode`, sets, numpy scalars, datetimes, OrderedDicts, tensors), rendered two ways:
 * - `toJson`: what `inspect --json` and the UI show; faithful, with `$`-tagged objects for what JSON lacks;
 * - `typedForm`: an exact, canonical form used to compare and digest metadata.
 */
import { type PyNode, type PyObject, isGlobal } from './pickle/nodes';

/** A float that must print as a float (`1.0`, not `1`) so Python readers get a float back. */
export class JsonFloat {
  constructor(readonly value: number) {}
}
export type Json = null | boolean | number | string | JsonFloat | Json[] | { [k: string]: Json };

export type Interpreted =
  | { kind: 'bytes'; value: Uint8Array }
  | { kind: 'set'; items: PyNode[]; frozen: boolean }
  | { kind: 'numpy_scalar'; dtype: string; raw: Uint8Array }
  | { kind: 'datetime'; iso: string }
  | { kind: 'ordereddict'; entries: Array<[PyNode, PyNode]>; state?: PyNode };

function latin1(n: PyNode | undefined): Uint8Array | undefined {
  if (n?.kind !== 'str') return undefined;
  const out = new Uint8Array(n.value.length);
  for (let i = 0; i < n.value.length; i++) {
    const c = n.value.charCodeAt(i);
    if (c > 255) return undefined;
    out[i] = c;
  }
  return out;
}

/** The bytes a node stands for: a real bytes node, or protocol 2's `_codecs.encode(text, 'latin1')`. */
export function bytesOf(n: PyNode | undefined): Uint8Array | undefined {
  if (!n) return undefined;
  if (n.kind === 'bytes') return n.value;
  if (n.kind !== 'object' || n.how !== 'reduce' || n.args.kind !== 'tuple') return undefined;
  const a = n.args.items;
  if (isGlobal(n.callable, '_codecs', 'encode') && a.length === 2 && a[1].kind === 'str' && a[1].value === 'latin1')
    return latin1(a[0]);
  if ((isGlobal(n.callable, '__builtin__', 'bytes') || isGlobal(n.callable, 'builtins', 'bytes')) && a.length === 0)
    return new Uint8Array(0);
  return undefined;
}

const NUMPY_CODES: Record<string, string> = {
  f8: 'float64',
  f4: 'float32',
  f2: 'float16',
  i8: 'int64',
  i4: 'int32',
  i2: 'int16',
  i1: 'int8',
  u8: 'uint64',
  u4: 'uint32',
  u2: 'uint16',
  u1: 'uint8',
  b1: 'bool',
  c8: 'complex64',
  c16: 'complex128',
};

function isReduceOf(n: PyNode, module: string | string[], name: string): n is PyObject {
  if (n.kind !== 'object' || n.callable.kind !== 'global' || n.callable.name !== name) return false;
  return Array.isArray(module) ? module.includes(n.callable.module) : n.callable.module === module;
}

const pad = (v: number, w: number) => String(v).padStart(w, '0');

export function interpret(n: PyNode): Interpreted | undefined {
  if (n.kind !== 'object') return undefined;
  const bytes = bytesOf(n);
  if (bytes) return { kind: 'bytes', value: bytes };
  const args = n.args.kind === 'tuple' ? n.args.items : [];
  if (isGlobal(n.callable, 'collections', 'OrderedDict') && args.length === 0) {
    // A state_dict's `_metadata` arrives as BUILD state; the entries are the mapping.
    return { kind: 'ordereddict', entries: n.setitems ?? [], state: n.state };
  }
  for (const mod of ['__builtin__', 'builtins']) {
    for (const name of ['set', 'frozenset'] as const) {
      if (isGlobal(n.callable, mod, name)) {
        const items = args.length === 0 ? [] : args[0].kind === 'list' ? args[0].items : undefined;
        if (items) return { kind: 'set', items, frozen: name === 'frozenset' };
      }
    }
  }
  if (isReduceOf(n, ['numpy.core.multiarray', 'numpy._core.multiarray'], 'scalar') && args.length === 2) {
    const dt = args[0];
    const raw = bytesOf(args[1]);
    if (raw && isReduceOf(dt, 'numpy', 'dtype') && dt.args.kind === 'tuple' && dt.args.items[0]?.kind === 'str') {
      const code = (dt.args.items[0] as { value: string }).value;
      return { kind: 'numpy_scalar', dtype: NUMPY_CODES[code] ?? code, raw };
    }
  }
  if (isGlobal(n.callable, 'datetime', 'datetime') && args.length >= 1) {
    const b = bytesOf(args[0]);
    if (b && b.length === 10) {
      const year = b[0] * 256 + b[1];
      const us = (b[7] << 16) | (b[8] << 8) | b[9];
      let iso = `${pad(year, 4)}-${pad(b[2], 2)}-${pad(b[3], 2)}T${pad(b[4], 2)}:${pad(b[5], 2)}:${pad(b[6], 2)}`;
      if (us) iso += `.${pad(us, 6)}`;
      return { kind: 'datetime', iso };
    }
  }
  if (isGlobal(n.callable, 'datetime', 'date') && args.length === 1) {
    const b = bytesOf(args[0]);
    if (b && b.length === 4)
      return { kind: 'datetime', iso: `${pad(b[0] * 256 + b[1], 4)}-${pad(b[2], 2)}-${pad(b[3], 2)}` };
  }
  return undefined;
}

/** The numeric value of a numpy scalar's raw little-endian bytes, where JSON can hold it. */
function numpyValue(dtype: string, raw: Uint8Array): Json {
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  switch (dtype) {
    case 'float64':
      return raw.length === 8 ? new JsonFloat(dv.getFloat64(0, true)) : null;
    case 'float32':
      return raw.length === 4 ? new JsonFloat(dv.getFloat32(0, true)) : null;
    case 'int64':
      return raw.length === 8 ? Number(dv.getBigInt64(0, true)) : null;
    case 'int32':
      return raw.length === 4 ? dv.getInt32(0, true) : null;
    case 'bool':
      return raw.length === 1 ? raw[0] !== 0 : null;
    default:
      return null;
  }
}

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const b64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');

/** How a tensor node is shown inside metadata. Supplied by the checkpoint, which knows digests. */
export type TensorLookup = (n: PyNode) => Json | undefined;

function globalName(n: PyNode): string {
  return n.kind === 'global' ? `${n.module}.${n.name}` : `<${n.kind}>`;
}

/**
 * JSON for display: None→null, bool, int→number (or {"$int": "…"} beyond 2^53), float→JsonFloat,
 * str, list, tuple→{"$tuple": […]}, dict with str keys→object (else {"$dict": [[k, v]…]}), bytes→{"$bytes": base64},
 * set→{"$set": […]}, numpy scalar→{"$numpy": dtype, "value": …}, datetime→{"$datetime": iso},
 * tensor→whatever `tensor` returns, anything else→{"$global": "module.name", "args": …, "state": …}.
 * Iterative depth is bounded by the pickle decoder's depth limit; cycles were rejected there.
 */
export function toJson(n: PyNode, tensor?: TensorLookup): Json {
  const t = tensor?.(n);
  if (t !== undefined) return t;
  switch (n.kind) {
    case 'none':
      return null;
    case 'bool':
      return n.value;
    case 'int': {
      const v = n.value;
      return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(v)
        : { $int: v.toString() };
    }
    case 'float':
      return new JsonFloat(n.value);
    case 'str':
      return n.value;
    case 'bytes':
      return { $bytes: b64(n.value) };
    case 'list':
      return n.items.map((x) => toJson(x, tensor));
    case 'tuple':
      return { $tuple: n.items.map((x) => toJson(x, tensor)) };
    case 'set':
      return { [n.frozen ? '$frozenset' : '$set']: n.items.map((x) => toJson(x, tensor)) };
    case 'dict':
      return dictJson(n.entries, tensor);
    case 'global':
      return { $global: `${n.module}.${n.name}` };
    case 'persid':
      return { $persid: toJson(n.pid, tensor) };
    case 'object': {
      const i = interpret(n);
      if (i) {
        switch (i.kind) {
          case 'bytes':
            return { $bytes: b64(i.value) };
          case 'set':
            return { [i.frozen ? '$frozenset' : '$set']: i.items.map((x) => toJson(x, tensor)) };
          case 'numpy_scalar':
            return { $numpy: i.dtype, value: numpyValue(i.dtype, i.raw) };
          case 'datetime':
            return { $datetime: i.iso };
          case 'ordereddict':
            return dictJson(i.entries, tensor);
        }
      }
      const out: { [k: string]: Json } = { $global: globalName(n.callable), args: toJson(n.args, tensor) };
      if (n.kwargs) out.kwargs = toJson(n.kwargs, tensor);
      if (n.appends?.length) out.items = n.appends.map((x) => toJson(x, tensor));
      if (n.setitems?.length) out.entries = dictJson(n.setitems, tensor);
      if (n.state) out.state = toJson(n.state, tensor);
      return out;
    }
  }
}

function dictJson(entries: Array<[PyNode, PyNode]>, tensor?: TensorLookup): Json {
  if (entries.every(([k]) => k.kind === 'str')) {
    const o: { [k: string]: Json } = {};
    for (const [k, v] of entries) o[(k as { value: string }).value] = toJson(v, tensor);
    return o;
  }
  return { $dict: entries.map(([k, v]) => [toJson(k, tensor), toJson(v, tensor)]) };
}

/**
 * JSON.stringify that keeps floats floats (`1.0`) and spells non-finite floats as tagged strings.
 * With `inlineWidth`, a container whose one-line form fits that many characters stays on one line.
 */
export function stringifyJson(v: Json, indent = 0, inlineWidth = 0): string {
  const parts: string[] = [];
  const nl = (depth: number) => (indent ? `\n${' '.repeat(indent * depth)}` : '');
  const sep = indent ? ': ' : ':';
  const walk = (x: Json, depth: number): void => {
    if (x instanceof JsonFloat) {
      const f = x.value;
      if (Number.isNaN(f)) parts.push('{"$float":"nan"}');
      else if (!Number.isFinite(f)) parts.push(f > 0 ? '{"$float":"inf"}' : '{"$float":"-inf"}');
      else if (Object.is(f, -0)) parts.push('-0.0');
      else {
        const s = String(f);
        parts.push(/[.eE]/.test(s) ? s : `${s}.0`);
      }
    } else if (inlineWidth && x !== null && typeof x === 'object' && fitsInline(x)) {
      parts.push(
        stringifyJson(x, 0)
          .replace(/,(?=["[{\-\d]|null|true|false)/g, ', ')
          .replace(/":(?=\S)/g, '": '),
      );
    } else if (Array.isArray(x)) {
      if (!x.length) {
        parts.push('[]');
        return;
      }
      parts.push('[');
      x.forEach((y, i) => {
        if (i) parts.push(',');
        parts.push(nl(depth + 1));
        walk(y, depth + 1);
      });
      parts.push(nl(depth), ']');
    } else if (x !== null && typeof x === 'object') {
      // Like JSON.stringify: a key whose value is undefined is left out.
      const keys = Object.keys(x).filter((k) => x[k] !== undefined);
      if (!keys.length) {
        parts.push('{}');
        return;
      }
      parts.push('{');
      keys.forEach((k, i) => {
        if (i) parts.push(',');
        parts.push(nl(depth + 1), JSON.stringify(k), sep);
        walk(x[k], depth + 1);
      });
      parts.push(nl(depth), '}');
    } else {
      parts.push(x === undefined ? 'null' : JSON.stringify(x));
    }
  };
  const fitsInline = (x: Json): boolean => stringifyJson(x, 0).length <= inlineWidth;
  walk(v, 0);
  return parts.join('');
}

/** Exact canonical form (the fixture manifest uses the same): every scalar tagged, floats as raw IEEE bits. */
export type Typed = [string, ...unknown[]];

// One scratch view: metadata digests render every float, and a Buffer per float was most of their cost.
const F64 = new DataView(new ArrayBuffer(8));
const BYTE_HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function floatHex(f: number): string {
  F64.setFloat64(0, f, false);
  let s = '';
  for (let i = 0; i < 8; i++) s += BYTE_HEX[F64.getUint8(i)];
  return s;
}

/** `full` also spells out the arguments and state of unknown objects (for digests, where every change must count). */
export function typedForm(n: PyNode, tensor?: (n: PyNode) => Typed | undefined, full = false): Typed {
  const t = tensor?.(n);
  if (t) return t;
  const rec = (x: PyNode) => typedForm(x, tensor, full);
  switch (n.kind) {
    case 'none':
      return ['none'];
    case 'bool':
      return ['bool', n.value];
    case 'int':
      return ['int', n.value.toString()];
    case 'float':
      return ['float', floatHex(n.value)];
    case 'str':
      return ['str', n.value];
    case 'bytes':
      return ['bytes', hex(n.value)];
    case 'list':
      return ['list', n.items.map(rec)];
    case 'tuple':
      return ['tuple', n.items.map(rec)];
    case 'dict':
      return ['dict', n.entries.map(([k, v]) => [rec(k), rec(v)])];
    case 'set':
      return ['set', sortedTyped(n.items.map(rec))];
    case 'global':
      return ['other', `${n.module}.${n.name}`];
    case 'persid':
      return full ? ['other', 'persid', rec(n.pid)] : ['other', 'persid'];
    case 'object': {
      const i = interpret(n);
      if (i) {
        switch (i.kind) {
          case 'bytes':
            return ['bytes', hex(i.value)];
          case 'set':
            return ['set', sortedTyped(i.items.map(rec))];
          case 'numpy_scalar':
            return ['numpy_scalar', i.dtype, hex(i.raw)];
          case 'datetime':
            return ['datetime', i.iso];
          case 'ordereddict': {
            const t: Typed = ['ordereddict', i.entries.map(([k, v]) => [rec(k), rec(v)])];
            if (full && i.state) t.push(rec(i.state));
            return t;
          }
        }
      }
      if (!full) return ['other', globalName(n.callable)];
      return [
        'other',
        globalName(n.callable),
        n.how,
        rec(n.args),
        n.kwargs ? rec(n.kwargs) : ['none'],
        (n.appends ?? []).map(rec),
        (n.setitems ?? []).map(([k, v]) => [rec(k), rec(v)]),
        n.state ? rec(n.state) : ['none'],
        (n.extraStates ?? []).map(rec),
      ];
    }
  }
}

/**
 * `JSON.stringify(typedForm(n, tensor, true))`, written directly as text: the same characters, without
 * building the nested arrays first (metadata digests render every metadata value of every file a
 * scan reads). Plain recursion, no closures: it runs hot and is compiled in every thread.
 */
export function typedFormJson(n: PyNode, tensor?: (n: PyNode) => Typed | undefined): string {
  if (tensor) {
    const t = tensor(n);
    if (t) return JSON.stringify(t);
  }
  switch (n.kind) {
    case 'none':
      return '["none"]';
    case 'bool':
      return n.value ? '["bool",true]' : '["bool",false]';
    case 'int':
      return `["int","${n.value.toString()}"]`;
    case 'float':
      return `["float","${floatHex(n.value)}"]`;
    case 'str':
      return `["str",${JSON.stringify(n.value)}]`;
    case 'bytes':
      return `["bytes","${hex(n.value)}"]`;
    case 'list':
      return `["list",${jsonList(n.items, tensor)}]`;
    case 'tuple':
      return `["tuple",${jsonList(n.items, tensor)}]`;
    case 'dict':
      return `["dict",${jsonPairs(n.entries, tensor)}]`;
    case 'set':
      return `["set",${jsonSorted(n.items, tensor)}]`;
    case 'global':
      return `["other",${JSON.stringify(`${n.module}.${n.name}`)}]`;
    case 'persid':
      return `["other","persid",${typedFormJson(n.pid, tensor)}]`;
    case 'object':
      return objectJson(n, tensor);
  }
}

function objectJson(n: PyObject, tensor?: (n: PyNode) => Typed | undefined): string {
  const i = interpret(n);
  if (i) {
    switch (i.kind) {
      case 'bytes':
        return `["bytes","${hex(i.value)}"]`;
      case 'set':
        return `["set",${jsonSorted(i.items, tensor)}]`;
      case 'numpy_scalar':
        return `["numpy_scalar",${JSON.stringify(i.dtype)},"${hex(i.raw)}"]`;
      case 'datetime':
        return `["datetime",${JSON.stringify(i.iso)}]`;
      case 'ordereddict':
        return `["ordereddict",${jsonPairs(i.entries, tensor)}${i.state ? `,${typedFormJson(i.state, tensor)}` : ''}]`;
    }
  }
  const none = '["none"]';
  return (
    `["other",${JSON.stringify(globalName(n.callable))},${JSON.stringify(n.how)},${typedFormJson(n.args, tensor)},${n.kwargs ? typedFormJson(n.kwargs, tensor) : none},` +
    `${jsonList(n.appends ?? [], tensor)},${jsonPairs(n.setitems ?? [], tensor)},${n.state ? typedFormJson(n.state, tensor) : none},${jsonList(n.extraStates ?? [], tensor)}]`
  );
}

function jsonList(xs: PyNode[], tensor?: (n: PyNode) => Typed | undefined): string {
  let s = '[';
  for (let i = 0; i < xs.length; i++) s += (i ? ',' : '') + typedFormJson(xs[i], tensor);
  return `${s}]`;
}

function jsonPairs(es: Array<[PyNode, PyNode]>, tensor?: (n: PyNode) => Typed | undefined): string {
  let s = '[';
  for (let i = 0; i < es.length; i++)
    s += `${i ? ',' : ''}[${typedFormJson(es[i][0], tensor)},${typedFormJson(es[i][1], tensor)}]`;
  return `${s}]`;
}

/** Like sortedTyped: ordered by each item's JSON text. */
function jsonSorted(xs: PyNode[], tensor?: (n: PyNode) => Typed | undefined): string {
  const parts = xs.map((x) => typedFormJson(x, tensor));
  parts.sort(compareText);
  return `[${parts.join(',')}]`;
}

const compareText = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function sortedTyped(items: Typed[]): Typed[] {
  // Python's set order is hash order; sort by a stable text so equal sets compare equal.
  return items
    .map((t) => [JSON.stringify(t), t] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map((x) => x[1]);
}
