// Bundles the three programs with esbuild: the VS Code client, the language server, the CLI.
// `vscode` is provided by the editor at run time, so it stays external.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';

// A clean dist/ each time, so nothing stale ships in the .vsix.
rmSync('dist', { recursive: true, force: true });

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  logLevel: 'warning',
  external: ['vscode'],
};

await Promise.all([
  build({ ...common, entryPoints: ['client/src/extension.ts'], outfile: 'dist/client.js' }),
  build({ ...common, entryPoints: ['server/src/lsp/server.ts'], outfile: 'dist/server.js' }),
  build({ ...common, entryPoints: ['server/src/cli/main.ts'], outfile: 'dist/cli.js' }),
  // Worker thread that reads checkpoints during large scans; loaded from beside the bundle that uses it.
  build({ ...common, entryPoints: ['server/src/engine/entryWorker.ts'], outfile: 'dist/entryWorker.js' }),
]);
