/**
 * A small strict JSON parser for the safetensors header. Stricter than JSON.parse where the reference
 * Rust implementation (serde) is: duplicate keys are rejected (JSON.parse keeps the last), number
 * text is kept as written (so `1e2` or `24.0` can be refused as offsets), key order is kept.
 */

export type JsonValue =
  | { kind: 'object'; entries: Array<[string, JsonValue]> }
  | { kind: 'array'; items: JsonValue[] }
  | { kind: 'string'; value: string }
  | { kind: 'number'; raw: string }
  | { kind: 'literal'; value: true | false | null };

/** A valid header needs depth 3 (root, entry, shape); this only bounds recursion on hostile input. */
const MAX_DEPTH = 16;
const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

/** Parses one JSON document; `error(message)` makes what is thrown for malformed text. */
export function parseStrictJson(text: string, error: (message: string) => Error): JsonValue {
  return new JsonParser(text, error).parseDocument();
}

class JsonParser {
  private pos = 0;
  constructor(
    private readonly s: string,
    private readonly error: (message: string) => Error,
  ) {}

  parseDocument(): JsonValue {
    this.skipWs();
    const v = this.value(0);
    this.skipWs();
    if (this.pos !== this.s.length) this.fail('unexpected data after the JSON object');
    return v;
  }

  private fail(msg: string): never {
    throw this.error(`invalid JSON at character ${this.pos}: ${msg}`);
  }

  private skipWs(): void {
    const s = this.s;
    while (this.pos < s.length) {
      const c = s.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      this.pos++;
    }
  }

  private value(depth: number): JsonValue {
    if (depth > MAX_DEPTH) this.fail('nested too deeply');
    const c = this.s.charCodeAt(this.pos);
    if (c === 0x7b /* { */) return this.object(depth);
    if (c === 0x5b /* [ */) return this.array(depth);
    if (c === 0x22 /* " */) return { kind: 'string', value: this.string() };
    if (c === 0x74 /* t */) return this.literal('true', true);
    if (c === 0x66 /* f */) return this.literal('false', false);
    if (c === 0x6e /* n */) return this.literal('null', null);
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(this.s);
    if (!m) this.fail(Number.isNaN(c) ? 'unexpected end' : `unexpected ${JSON.stringify(this.s[this.pos])}`);
    this.pos += m[0].length;
    return { kind: 'number', raw: m[0] };
  }

  private literal(word: string, value: true | false | null): JsonValue {
    if (!this.s.startsWith(word, this.pos)) this.fail('unexpected literal');
    this.pos += word.length;
    return { kind: 'literal', value };
  }

  private object(depth: number): JsonValue {
    this.pos++; // {
    const entries: Array<[string, JsonValue]> = [];
    const keys = new Set<string>();
    this.skipWs();
    if (this.s[this.pos] === '}') {
      this.pos++;
      return { kind: 'object', entries };
    }
    for (;;) {
      if (this.s[this.pos] !== '"') this.fail('expected a string key');
      const key = this.string();
      if (keys.has(key)) throw this.error(`duplicate key ${JSON.stringify(key)}`);
      keys.add(key);
      this.skipWs();
      if (this.s[this.pos] !== ':') this.fail('expected ":"');
      this.pos++;
      this.skipWs();
      entries.push([key, this.value(depth + 1)]);
      this.skipWs();
      const c = this.s[this.pos++];
      if (c === '}') return { kind: 'object', entries };
      if (c !== ',') this.fail('expected "," or "}"');
      this.skipWs();
    }
  }

  private array(depth: number): JsonValue {
    this.pos++; // [
    const items: JsonValue[] = [];
    this.skipWs();
    if (this.s[this.pos] === ']') {
      this.pos++;
      return { kind: 'array', items };
    }
    for (;;) {
      items.push(this.value(depth + 1));
      this.skipWs();
      const c = this.s[this.pos++];
      if (c === ']') return { kind: 'array', items };
      if (c !== ',') this.fail('expected "," or "]"');
      this.skipWs();
    }
  }

  private string(): string {
    const s = this.s;
    this.pos++; // opening quote
    let out = '';
    let runStart = this.pos;
    for (;;) {
      if (this.pos >= s.length) this.fail('unterminated string');
      const c = s.charCodeAt(this.pos);
      if (c === 0x22) {
        out += s.slice(runStart, this.pos);
        this.pos++;
        return out;
      }
      if (c < 0x20) this.fail('control character in string');
      if (c !== 0x5c) {
        this.pos++;
        continue;
      }
      out += s.slice(runStart, this.pos);
      out += this.escape();
      runStart = this.pos;
    }
  }

  /** At a backslash; returns the decoded text. Surrogates must come in proper pairs. */
  private escape(): string {
    const e = this.s[this.pos + 1];
    this.pos += 2;
    switch (e) {
      case '"':
        return '"';
      case '\\':
        return '\\';
      case '/':
        return '/';
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'u': {
        const hi = this.hex4();
        if (hi >= 0xdc00 && hi <= 0xdfff) this.fail('lone low surrogate escape');
        if (hi < 0xd800 || hi > 0xdbff) return String.fromCharCode(hi);
        if (this.s[this.pos] !== '\\' || this.s[this.pos + 1] !== 'u') this.fail('lone high surrogate escape');
        this.pos += 2;
        const lo = this.hex4();
        if (lo < 0xdc00 || lo > 0xdfff) this.fail('lone high surrogate escape');
        return String.fromCharCode(hi, lo);
      }
      default:
        this.pos -= 2;
        return this.fail('bad escape');
    }
  }

  private hex4(): number {
    const h = this.s.slice(this.pos, this.pos + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) this.fail('bad \\u escape');
    this.pos += 4;
    return parseInt(h, 16);
  }
}
