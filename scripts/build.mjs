// Bundles the three programs with esbuild: the VS Code client, the language server, the CLI.
// `vscode` is provided by the editor at run time, so it stays external.
// `--tests` also bundles the extension-host suite (test/vscode/suite) into out/test/vscode/suite.
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { writeIfChanged as writeConfigValidator } from './configValidator.mjs';

// The engine's lora-sync.json validator, generated from the schema VS Code reads (never stale in a bundle).
writeConfigValidator();

// A clean dist/ each time, so nothing stale ships in the .vsix.
rmSync('dist', { recursive: true, force: true });

// `--production` (npm run package): minified, no source maps, for the .vsix.
const production = process.argv.includes('--production');
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: !production,
  minify: production,
  logLevel: 'warning',
  // The native hashers load at run time (from node_modules, or from dist/native/ in the .vsix).
  external: ['vscode', '@node-rs/*'],
  // hash-wasm's `main` is one UMD file holding every algorithm's WebAssembly (268 kB in each bundle);
  // its ES module build is side-effect free, so only XXH64 (the portable fallback) is bundled. (A
  // path inside the package: a hash-wasm that moved it fails this build loudly, never silently.)
  alias: { 'hash-wasm': 'hash-wasm/dist/index.esm.js' },
};

await Promise.all([
  build({ ...common, entryPoints: ['client/src/extension.ts'], outfile: 'dist/client.js' }),
  build({ ...common, entryPoints: ['server/src/lsp/server.ts'], outfile: 'dist/server.js' }),
  build({ ...common, entryPoints: ['server/src/cli/main.ts'], outfile: 'dist/cli.js' }),
  // Worker thread that reads checkpoints during large scans; loaded from beside the bundle that uses it.
  build({ ...common, entryPoints: ['server/src/engine/entryWorker.ts'], outfile: 'dist/entryWorker.js' }),
]);

// The prebuilt hashers npm installed for this platform, copied beside the bundles for the .vsix
// (which has no node_modules); other platforms use the portable hashers (server/src/formats/hashBackend.ts).
mkdirSync('dist/native', { recursive: true });
for (const pkg of ['xxhash', 'crc32']) {
  const scope = 'node_modules/@node-rs';
  for (const dir of existsSync(scope) ? readdirSync(scope).filter((d) => d.startsWith(`${pkg}-`)) : []) {
    for (const f of readdirSync(`${scope}/${dir}`).filter((f) => f.endsWith('.node')))
      copyFileSync(`${scope}/${dir}/${f}`, `dist/native/${f}`);
  }
}

if (process.argv.includes('--tests')) {
  rmSync('out', { recursive: true, force: true });
  const dir = 'test/vscode/suite';
  const entries = readdirSync(dir)
    .filter((f) => f === 'index.ts' || f.endsWith('.vscode.test.ts'))
    .map((f) => `${dir}/${f}`);
  // One file per test module (mocha adds them one by one); mocha itself is loaded from node_modules.
  await build({ ...common, entryPoints: entries, outdir: 'out/test/vscode/suite', external: ['vscode', 'mocha'] });
}
