/**
 * JSON output written as it is made: the bytes of `JSON.stringify(value, null, 2)` and a newline,
 * without that whole text in memory at once. A 100x workspace's `status --json` is 45 MB of JSON;
 * made whole it is one string of twice that (V8 keeps it two bytes a character, since paths hold
 * emoji), then its UTF-8 copy for the write, and it took the CLI's peak from ~260 to ~480 MB.
 *
 * The top levels (the report and its arrays) are walked here; each value below them is one native
 * `JSON.stringify`, re-indented. Re-indenting is a plain replace of "\n": JSON text holds no raw
 * newline but those its indentation puts there (a newline inside a string is written `\n`).
 */
import type { Writable } from 'node:stream';

/**
 * Levels walked here by default: the report object, then its arrays; below them, one native
 * stringify per value. SARIF's results sit deeper (the log, `runs`, the run, `results`): 4.
 */
export const WALKED_LEVELS = 2;
/** Characters gathered before a write: a few hundred writes for 45 MB, each small in memory. */
const CHUNK_CHARS = 1 << 16;

/**
 * Writes `value` as `JSON.stringify(value, null, 2)` would, then a newline, to `sink` (stdout),
 * waiting whenever the sink asks to (a slow pipe). Stops early, quietly, if the sink is destroyed
 * (the reader went away: main.ts ends the process on EPIPE). `value` is an object or array; the
 * first `levels` levels of it are walked here (the bytes are the same whatever `levels` is). A value
 * JSON.stringify refuses (a BigInt, a cycle) throws as it would, but after the chunks before it
 * were written: the reports this writes hold neither.
 */
export async function writeJson(value: object, sink: Writable = process.stdout, levels = WALKED_LEVELS): Promise<void> {
  let buf = '';
  for (const part of jsonParts(prepared(value, ''), '', levels)) {
    buf += part;
    if (buf.length < CHUNK_CHARS) continue;
    if (!(await put(sink, buf))) return;
    buf = '';
  }
  await put(sink, `${buf}\n`);
}

/** One write; false once the sink is gone or failed. */
async function put(sink: Writable, text: string): Promise<boolean> {
  if (sink.destroyed || sink.errored) return false;
  if (!sink.write(text)) {
    await new Promise<void>((resolve) => {
      // A sink that fails may neither drain nor close (autoDestroy off): its error ends the wait too.
      const done = () => {
        sink.off('drain', done).off('close', done).off('error', done);
        resolve();
      };
      sink.on('drain', done).on('close', done).on('error', done);
    });
  }
  return !(sink.destroyed || sink.errored);
}

/** The text of `v` (already `prepared`) at `indent`, in parts; `levels` more levels walked here. */
function* jsonParts(v: unknown, indent: string, levels: number): Generator<string> {
  if (levels === 0 || !isWalkable(v)) {
    // Native below the walked levels. `v`'s own toJSON has run (prepared), and the text is exact as
    // long as what it returned has none of its own (a Date's string has none).
    const text = JSON.stringify(v, null, 2);
    yield indent && text.includes('\n') ? text.replace(/\n/g, `\n${indent}`) : text;
    return;
  }
  const inner = `${indent}  `;
  if (Array.isArray(v)) {
    if (v.length === 0) {
      yield '[]';
      return;
    }
    for (let i = 0; i < v.length; i++) {
      yield `${i ? ',' : '['}\n${inner}`;
      const e = prepared(v[i], String(i));
      // An array says null where an object would leave the member out.
      if (omitted(e)) yield 'null';
      else yield* jsonParts(e, inner, levels - 1);
    }
    yield `\n${indent}]`;
    return;
  }
  let first = true;
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    const e = prepared(o[k], k);
    if (omitted(e)) continue;
    yield `${first ? '{' : ','}\n${inner}${JSON.stringify(k)}: `;
    first = false;
    yield* jsonParts(e, inner, levels - 1);
  }
  yield first ? '{}' : `\n${indent}}`;
}

/** What JSON.stringify serialises for the member `key` holding `v`: its toJSON's result, if it has one. */
function prepared(v: unknown, key: string): unknown {
  const toJSON = (v as { toJSON?: unknown } | null | undefined)?.toJSON;
  return typeof toJSON === 'function' ? toJSON.call(v, key) : v;
}

/** Values JSON.stringify leaves out of an object (and writes as null in an array). */
function omitted(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol';
}

/** Arrays and plain objects are walked; boxed primitives and everything else go to native stringify. */
function isWalkable(v: unknown): v is object {
  return (
    v !== null &&
    typeof v === 'object' &&
    !(v instanceof Number || v instanceof String || v instanceof Boolean || v instanceof BigInt)
  );
}
