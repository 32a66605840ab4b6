/**
 * Runs the extension-host suite (test/vscode/suite) inside code-server's real extension host:
 * the workbench is opened by Chromium with a `payload` URL parameter naming the extension under
 * development (this repository, as built in dist/) and the suite's entry point, exactly what
 * `@vscode/test-electron` passes to a desktop VS Code (see runElectron.ts). It runs twice: in the
 * seed's fixture workspace and in a workspace of real LoRA layouts (test/fixtures/layouts).
 *
 *   npm run test:vscode        (after scripts/e2e/install-code-server.sh)
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { format } from 'node:util';
import { copyFixtureWorkspace, copyLayoutsWorkspace } from '../support/files';
import { launchChromium, missingPieces, REPO, startCodeServer, workbenchUrl } from '../support/codeServer';

const TIMEOUT_MS = Number(process.env.LORA_SYNC_VSCODE_TIMEOUT_MS ?? 600_000);

/** The workspaces the suite runs in, each with its own code-server (test/vscode/suite/index.ts picks the files). */
const WORKSPACES: Record<string, () => Promise<string>> = {
  seed: () => copyFixtureWorkspace('lora-vscode-ws-'),
  layouts: () => copyLayoutsWorkspace('lora-vscode-layouts-'),
};

interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

/** One workspace: code-server + Chromium opened on it with the suite as `extensionTestsPath`. */
async function runIn(name: string): Promise<{ code: number; counts?: Counts }> {
  const ws = await WORKSPACES[name]();
  const resultsDir = await mkdtemp(join(tmpdir(), 'lora-vscode-results-'));
  const results = join(resultsDir, 'results.json');
  const env: Record<string, string> = { LORA_SYNC_VSCODE_RESULTS: results, LORA_SYNC_VSCODE_SUITE: name };
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
    if (code === -1) console.error(`the extension-host suite (${name}) did not finish within ${TIMEOUT_MS / 1000} s`);
    const counts = await readFile(results, 'utf8')
      .then((t) => JSON.parse(t) as Counts)
      .catch(() => undefined);
    if (!counts)
      console.error(
        `the ${name} suite wrote no results: it did not run in the extension host. code-server said:\n${cs.output().slice(-4000)}`,
      );
    return { code, counts };
  } finally {
    await browser.close();
    await cs.stop();
    await rm(ws, { recursive: true, force: true });
    await rm(resultsDir, { recursive: true, force: true });
  }
}

async function main(): Promise<number> {
  const missing = missingPieces();
  if (missing) {
    console.error(`test:vscode cannot run: ${missing}`);
    return 2;
  }
  // LORA_SYNC_VSCODE_WORKSPACES=seed (or layouts) runs one of them.
  const names = (process.env.LORA_SYNC_VSCODE_WORKSPACES ?? Object.keys(WORKSPACES).join(','))
    .split(',')
    .map((n) => n.trim())
    .filter(Boolean);
  for (const n of names)
    if (!WORKSPACES[n]) throw new Error(`unknown workspace ${n} (${Object.keys(WORKSPACES).join(', ')})`);
  let ok = true;
  const lines: string[] = [];
  for (const name of names) {
    const { code, counts } = await runIn(name);
    if (!counts) {
      ok = false;
      lines.push(`${name}: no results`);
      continue;
    }
    ok &&= code === 0 && counts.failed === 0 && counts.passed > 0;
    lines.push(`${name}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
  }
  console.log(`\nextension host (code-server): ${lines.join('; ')}`);
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Error ? e.stack : e);
    process.exit(1);
  },
);
