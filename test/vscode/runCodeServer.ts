/**
 * Runs the extension-host suite (test/vscode/suite) inside code-server's real extension host:
 * the workbench is opened by Chromium with a `payload` URL parameter naming the extension under
 * development (this repository, as built in dist/) and the suite's entry point, exactly what
 * `@vscode/test-electron` passes to a desktop VS Code (see runElectron.ts).
 *
 *   npm run test:vscode        (after scripts/e2e/install-code-server.sh)
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { format } from 'node:util';
import { copyFixtureWorkspace } from '../support/files';
import { launchChromium, missingPieces, REPO, startCodeServer, workbenchUrl } from '../support/codeServer';

const TIMEOUT_MS = Number(process.env.LORA_SYNC_VSCODE_TIMEOUT_MS ?? 600_000);

async function main(): Promise<number> {
  const missing = missingPieces();
  if (missing) {
    console.error(`test:vscode cannot run: ${missing}`);
    return 2;
  }
  const ws = await copyFixtureWorkspace('lora-vscode-ws-');
  const resultsDir = await mkdtemp(join(tmpdir(), 'lora-vscode-results-'));
  const results = join(resultsDir, 'results.json');
  const env: Record<string, string> = { LORA_SYNC_VSCODE_RESULTS: results };
  if (process.env.LORA_SYNC_TEST_TALLY) env.LORA_SYNC_TEST_TALLY = process.env.LORA_SYNC_TEST_TALLY;
  const cs = await startCodeServer({ env });
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    let done: (code: number) => void = () => {};
    const exited = new Promise<number>((r) => (done = r));
    // The workbench hands the extension host's console (mocha's report) and its end to these two.
    await page.exposeFunction('codeAutomationLog', (type: string, args: unknown[]) => {
      const text = format(...(Array.isArray(args) ? args : [args]));
      if (text.trim()) (type === 'error' ? console.error : console.log)(text);
    });
    await page.exposeFunction('codeAutomationExit', (code: number) => done(code));
    const remote = (p: string) => `vscode-remote://127.0.0.1:${cs.port}${p}`;
    await page.goto(
      workbenchUrl(cs, ws, [
        ['extensionDevelopmentPath', remote(REPO)],
        ['extensionTestsPath', remote(join(REPO, 'out', 'test', 'vscode', 'suite', 'index.js'))],
      ]),
    );
    const timer = new Promise<number>((r) => setTimeout(() => r(-1), TIMEOUT_MS));
    const code = await Promise.race([exited, timer]);
    if (code === -1) console.error(`the extension-host suite did not finish within ${TIMEOUT_MS / 1000} s`);
    const counts = await readFile(results, 'utf8')
      .then((t) => JSON.parse(t) as { passed: number; failed: number; skipped: number })
      .catch(() => undefined);
    if (!counts) {
      console.error(
        `the suite wrote no results: it did not run in the extension host. code-server said:\n${cs.output().slice(-4000)}`,
      );
      return 1;
    }
    console.log(
      `\nextension host (code-server): ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`,
    );
    return code === 0 && counts.failed === 0 && counts.passed > 0 ? 0 : 1;
  } finally {
    await browser.close();
    await cs.stop();
    await rm(ws, { recursive: true, force: true });
    await rm(resultsDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Error ? e.stack : e);
    process.exit(1);
  },
);
