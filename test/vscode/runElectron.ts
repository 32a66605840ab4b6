/**
 * The same extension-host suite under a desktop VS Code downloaded by `@vscode/test-electron`, for
 * machines that can reach the VS Code download service (a laptop, a public CI). On machines that
 * cannot (this project's build machines), `npm run test:vscode` runs it in code-server instead.
 *
 *   npm run test:vscode:electron
 */
import { runTests } from '@vscode/test-electron';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { copyFixtureWorkspace, copyLayoutsWorkspace } from '../support/files';
import { REPO } from '../support/codeServer';

/** The seed's fixture workspace, then the real layouts (suite/index.ts picks the files by LORA_SYNC_VSCODE_SUITE). */
async function main(): Promise<void> {
  for (const [name, make] of [
    ['seed', () => copyFixtureWorkspace('lora-vscode-ws-')],
    ['layouts', () => copyLayoutsWorkspace('lora-vscode-layouts-')],
  ] as const) {
    const ws = await make();
    try {
      await runTests({
        version: process.env.LORA_SYNC_VSCODE_VERSION ?? 'stable',
        extensionDevelopmentPath: REPO,
        extensionTestsPath: join(REPO, 'out', 'test', 'vscode', 'suite', 'index.js'),
        extensionTestsEnv: { LORA_SYNC_VSCODE_SUITE: name },
        // Only our extension; no trust prompt (the suite syncs, which an untrusted workspace refuses).
        launchArgs: [ws, '--disable-extensions', '--disable-workspace-trust', '--skip-welcome', '--skip-release-notes'],
      });
    } finally {
      await rm(ws, { recursive: true, force: true });
    }
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
