/**
 * The test entry the VS Code extension host calls (`run(): Promise<void>`), the same for
 * `@vscode/test-electron` (desktop) and code-server's `extensionTestsPath` payload (here and in CI).
 * Mocha's report goes to the console; the counts also go to the files named by
 * LORA_SYNC_VSCODE_RESULTS (JSON) and LORA_SYNC_TEST_TALLY (the CI tally), because the extension
 * host's exit code alone does not say how many tests ran.
 *
 * LORA_SYNC_VSCODE_SUITE names the workspace the host was opened on (runCodeServer.ts): `layouts` runs
 * `layouts.vscode.test.js`, anything else (the seed's fixture workspace) the other suites.
 */
import Mocha from 'mocha';
import { appendFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export async function run(): Promise<void> {
  const mocha = new Mocha({ ui: 'bdd', timeout: 120_000, color: false, reporter: 'spec' });
  const layouts = process.env.LORA_SYNC_VSCODE_SUITE === 'layouts';
  for (const f of readdirSync(__dirname)
    .filter((n) => n.endsWith('.vscode.test.js') && n.startsWith('layouts.') === layouts)
    .sort())
    mocha.addFile(join(__dirname, f));
  const counts = { passed: 0, failed: 0, skipped: 0, failures: [] as string[] };
  await new Promise<void>((resolve) => {
    const runner = mocha.run(() => resolve());
    runner.on('pass', () => counts.passed++);
    runner.on('fail', (t, err: Error) => {
      counts.failed++;
      counts.failures.push(`${t.fullTitle()}: ${err.message}`);
    });
    runner.on('pending', () => counts.skipped++);
  });
  const line = `extension host: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`;
  console.log(line);
  if (process.env.LORA_SYNC_VSCODE_RESULTS)
    writeFileSync(process.env.LORA_SYNC_VSCODE_RESULTS, JSON.stringify(counts, null, 2));
  if (process.env.LORA_SYNC_TEST_TALLY)
    appendFileSync(process.env.LORA_SYNC_TEST_TALLY, `${counts.passed} ${counts.failed} ${counts.skipped}\n`);
  if (counts.failed) throw new Error(`${counts.failed} extension-host test(s) failed:\n${counts.failures.join('\n')}`);
}
