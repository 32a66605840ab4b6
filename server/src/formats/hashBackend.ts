/**
 * CRC32 and streaming XXH64, from prebuilt native code when it loads (`@node-rs/crc32`,
 * `@node-rs/xxhash`, N-API, so one binary serves Node and VS Code's Electron alike), else from
 * portable code (`zlib.crc32`, hash-wasm's WebAssembly XXH64). Both backends give the same values
 * bit for bit (tested), so digests, caches and sync records never depend on which one ran.
 *
 * Why native: on a 200 MB adapter (`npm run bench:format`), CRC32 runs at ~9 GB/s native against
 * ~3.5 GB/s in zlib, and XXH64 at ~9 GB/s against ~5.7 GB/s in WebAssembly; with reads overlapped,
 * that is what brings fingerprinting close to `cat`.
 *
 * Where the binaries come from: `npm ci` installs the one for this platform (an optional dependency
 * of each package); the .vsix carries copies in `dist/native/` (scripts/build.mjs), loaded by path.
 * `LORA_SYNC_HASH_BACKEND=portable` forces the portable backend (tests, benchmarks).
 */
import { crc32 as zlibCrc32 } from 'node:zlib';
import { join } from 'node:path';
import { createXXHash64, type IHasher } from 'hash-wasm';

/** A streaming XXH64 with seed 0; `digestInto` writes the canonical (big-endian) 8 bytes. */
export interface Xxh64Stream {
  init(): void;
  update(b: Uint8Array): void;
  digestInto(out: Buffer, offset: number): void;
  /**
   * The digest of `b` alone into `out` at `offset`, without touching the stream's state: one native
   * call where init + update + digest are three (most LoRA tensors are kilobytes). Absent: use those.
   */
  oneShotInto?(b: Uint8Array, out: Buffer, offset: number): void;
}

export interface HashBackend {
  readonly name: 'native' | 'portable';
  crc32(b: Uint8Array, initial?: number): number;
  /** A new hasher now, or undefined while a portable one is still being instantiated (then `xxh64()`). */
  xxh64Now(): Xxh64Stream | undefined;
  xxh64(): Promise<Xxh64Stream>;
}

interface NativeXxhash {
  Xxh64: new () => { update(b: Uint8Array): unknown; digest(): bigint; reset(): void };
  xxh64(b: Uint8Array): bigint;
}
interface NativeCrc {
  crc32(b: Uint8Array, initial?: number | null): number;
}

/** Binary file names napi-rs gives this platform, most specific first. */
function nativeTriples(): string[] {
  const { platform, arch } = process;
  // A binary built for the other C library fails to load, and the next is tried.
  if (platform === 'linux') return [`linux-${arch}-gnu`, `linux-${arch}-musl`];
  if (platform === 'win32') return [`win32-${arch}-msvc`];
  return [`${platform}-${arch}`];
}

function loadNative<T>(file: 'xxhash' | 'crc32'): T | undefined {
  const tries: Array<() => T> = [];
  for (const triple of nativeTriples()) {
    // Beside the bundle first (what the .vsix ships: no lookup through parent node_modules folders),
    // then the platform's package (its main is the binary; the wrapper package's index would probe the
    // C library again).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    tries.push(() => require(join(__dirname, 'native', `${file}.${triple}.node`)) as T);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    tries.push(() => require(`@node-rs/${file}-${triple}`) as T);
  }
  for (const t of tries) {
    try {
      return t();
    } catch {
      // Not installed for this platform, or not loadable here: try the next, then go portable.
    }
  }
  return undefined;
}

function nativeBackend(): HashBackend | undefined {
  const xx = loadNative<NativeXxhash>('xxhash');
  const crc = loadNative<NativeCrc>('crc32');
  if (!xx?.Xxh64 || !xx.xxh64 || !crc?.crc32) return undefined;
  // Whatever loaded must compute the published check values, or the portable hashers are used.
  try {
    const h = new xx.Xxh64();
    h.update(Buffer.from('abc'));
    if (
      h.digest() !== 0x44bc2cf5ad770999n ||
      xx.xxh64(Buffer.from('abc')) !== 0x44bc2cf5ad770999n ||
      crc.crc32(Buffer.from('123456789'), 0) !== 0xcbf43926
    )
      return undefined;
  } catch {
    return undefined;
  }
  const make = (): Xxh64Stream => {
    const h = new xx.Xxh64();
    return {
      init: () => h.reset(),
      update: (b) => {
        h.update(b);
      },
      digestInto: (out, offset) => {
        out.writeBigUInt64BE(h.digest(), offset);
      },
      oneShotInto: (b, out, offset) => {
        out.writeBigUInt64BE(xx.xxh64(b), offset);
      },
    };
  };
  return {
    name: 'native',
    crc32: (b, initial = 0) => crc.crc32(b, initial),
    xxh64Now: make,
    xxh64: async () => make(),
  };
}

function wrapWasm(h: IHasher): Xxh64Stream {
  return {
    init: () => {
      h.init();
    },
    update: (b) => {
      h.update(b);
    },
    digestInto: (out, offset) => {
      out.set(h.digest('binary'), offset);
    },
  };
}

function portableBackend(): HashBackend {
  // One WebAssembly instance is made ahead, so the first synchronous caller usually finds it.
  let spare: IHasher | undefined;
  void createXXHash64().then(
    (h) => {
      spare = h;
    },
    () => undefined,
  );
  return {
    name: 'portable',
    crc32: (b, initial = 0) => zlibCrc32(b, initial),
    xxh64Now: () => {
      const h = spare;
      spare = undefined;
      if (h)
        void createXXHash64().then(
          (n) => {
            spare ??= n;
          },
          () => undefined,
        );
      return h ? wrapWasm(h) : undefined;
    },
    xxh64: async () => wrapWasm(await createXXHash64()),
  };
}

let chosen: HashBackend | undefined;

/** The backend this process uses (chosen once). */
export function hashBackend(): HashBackend {
  if (!chosen)
    chosen = (process.env.LORA_SYNC_HASH_BACKEND === 'portable' ? undefined : nativeBackend()) ?? portableBackend();
  return chosen;
}

/** Both backends, for tests that check they agree (native is undefined where it does not load). */
export function allBackends(): { native?: HashBackend; portable: HashBackend } {
  return { native: nativeBackend(), portable: portableBackend() };
}

/** CRC32 (zip's), from the chosen backend. */
export function crc32(b: Uint8Array, initial = 0): number {
  return hashBackend().crc32(b, initial);
}
