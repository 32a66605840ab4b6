/**
 * What a person sees: the packaged extension (.vsix) installed in code-server, the workbench
 * driven by Chromium like a user drives it (clicks, the keyboard, the command palette), on a copy
 * of the workspace written by real torch. Screenshots go to artifacts/e2e/ (CI keeps that folder).
 *
 *   npm run package && npm run test:e2e      (after scripts/e2e/install-code-server.sh)
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser, Frame, Page } from 'playwright-core';
import { copyFixtureWorkspace } from '../support/files';
import {
  type CodeServer,
  launchChromium,
  missingPieces,
  REPO,
  startCodeServer,
  workbenchUrl,
} from '../support/codeServer';

const VSIX = process.env.LORA_SYNC_VSIX ?? join(REPO, 'artifacts', 'lora-sync.vsix');
const SHOTS = join(REPO, 'artifacts', 'e2e');

interface Expected {
  path: string;
  expect: string;
  sync_blocked?: string;
}

/** The count on the Problems tab of the panel (0 when it shows none). */
async function problemsBadge(page: Page): Promise<number> {
  const tab = page.locator('.part.panel .composite-bar .action-item', { hasText: /^PROBLEMS/i }).first();
  const text = await tab.innerText();
  const m = /(\d+)\s*$/.exec(text.trim());
  return m ? Number(m[1]) : 0;
}

async function loraStatusItem(page: Page): Promise<string> {
  return (await page.locator('.statusbar-item[id$="loraSync.status"]').innerText()).replace(/\s+/g, ' ').trim();
}

async function waitUntil(page: Page, what: string, probe: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await page.waitForTimeout(200);
  }
}

/** The frame of the webview whose document has `selector` (webviews are nested iframes). */
async function webviewFrame(page: Page, selector: string, timeoutMs = 30_000): Promise<Frame> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    for (const f of page.frames()) {
      if (
        await f
          .locator(selector)
          .count()
          .catch(() => 0)
      )
        return f;
    }
    if (Date.now() > end) throw new Error(`no webview shows ${selector}`);
    await page.waitForTimeout(250);
  }
}

/** Runs a command from the palette, typed as a user types it (from wherever the focus is, even a webview). */
async function runCommand(page: Page, title: string): Promise<void> {
  // Keys typed inside a webview stay there: give the workbench the focus first (the active tab's title).
  const input = page.locator('.quick-input-widget input');
  // The palette of the previous command may still be closing: start from a closed one, and try again
  // if it closes under us.
  // Where the focus goes first, in turn: the active tab's title; the side bar's title (never a webview,
  // which an active inspector tab hands the focus back to); the status bar. Then the shortcut or F1.
  const focusers = [
    () => page.locator('.tabs-container .tab.active').first().click({ timeout: 2_000 }),
    () => page.locator('.part.sidebar .composite.title').first().click({ timeout: 2_000 }),
    () =>
      page
        .locator('.part.statusbar')
        .first()
        .click({ position: { x: 2, y: 2 }, timeout: 2_000 }),
  ];
  for (let attempt = 1; ; attempt++) {
    await input.waitFor({ state: 'hidden', timeout: 5_000 }).catch(() => page.keyboard.press('Escape'));
    await focusers[(attempt - 1) % focusers.length]().catch(() => undefined);
    await page.keyboard.press(attempt % 2 ? 'Control+Shift+P' : 'F1');
    try {
      await input.waitFor({ state: 'visible', timeout: 5_000 });
      await input.fill(`>${title}`, { timeout: 5_000 });
      break;
    } catch (e) {
      if (attempt === 6) throw e;
    }
  }
  // The row whose label is the title (fuzzy matching may rank a longer title first).
  const rows = page.locator('.quick-input-widget .monaco-list-row');
  const exact = async () =>
    await rows.evaluateAll(
      (els, t) =>
        els.findIndex((el) => {
          const label = el.getAttribute('aria-label') ?? '';
          return label === t || label.startsWith(`${t},`);
        }),
      title,
    );
  await waitUntil(page, `the palette to offer "${title}"`, async () => (await exact()) >= 0, 10_000).catch(
    async (e) => {
      const shown = await rows.evaluateAll((els) => els.map((el) => el.getAttribute('aria-label')));
      throw new Error(`${(e as Error).message}; the palette shows: ${shown.join(' | ')}`);
    },
  );
  for (let i = await exact(); i > 0; i--) await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Enter');
}

/** Picks a colour theme the way a user does: the palette, then the theme picker. */
async function pickTheme(page: Page, theme: string): Promise<void> {
  await runCommand(page, 'Preferences: Color Theme');
  await page.waitForTimeout(500);
  await page.locator('.quick-input-widget input').fill(theme);
  const first = page.locator('.quick-input-widget .monaco-list-row.focused').first();
  await waitUntil(page, `the theme picker to offer "${theme}"`, async () =>
    ((await first.getAttribute('aria-label')) ?? '').startsWith(theme),
  );
  await page.keyboard.press('Enter');
  await page.waitForTimeout(1000);
}

describe('LoRA Sync in the browser (code-server + Chromium)', function () {
  this.timeout(180_000);
  let cs: CodeServer | undefined;
  let browser: Browser | undefined;
  let page: Page;
  let ws: string;
  let expected: Expected[];
  let problems: number;
  let remaining: number;
  let statusBefore: string;

  before(async function () {
    const missing = missingPieces() ?? (existsSync(VSIX) ? undefined : `${VSIX} missing: run npm run package`);
    if (missing) {
      if (process.env.LORA_SYNC_REQUIRE_VSCODE) throw new Error(missing); // set by .ci/run, which installs everything
      console.log(`      skipped: ${missing}`);
      this.skip();
    }
    await mkdir(SHOTS, { recursive: true });
    ws = await copyFixtureWorkspace('lora-e2e-ws-');
    expected = JSON.parse(await readFile(join(ws, 'expected.json'), 'utf8')).files;
    problems = expected.filter((f) => !['SOURCE', 'IN_SYNC', 'UNRECOGNIZED'].includes(f.expect)).length;
    // Sync All fixes the stale copies it may write and the metadata drift; the rest needs a person.
    remaining =
      problems -
      expected.filter((f) => (f.expect === 'STALE' && !f.sync_blocked) || f.expect === 'METADATA_DRIFT').length;
    cs = await startCodeServer({ vsix: [VSIX] });
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    await page.goto(workbenchUrl(cs, ws));
    await page.waitForSelector('.monaco-workbench', { timeout: 60_000 });
  });

  after(async () => {
    await browser?.close();
    await cs?.stop();
    if (ws) await rm(ws, { recursive: true, force: true });
  });

  it('activates from the workspace and reports in the status bar', async () => {
    await page.waitForSelector('.statusbar-item[id$="loraSync.status"]', { timeout: 60_000 });
    await waitUntil(
      page,
      'the status-bar item to count the stale copies',
      async () => /LoRA \d+ · \d+ stale/.test(await loraStatusItem(page)),
      60_000,
    );
    statusBefore = await loraStatusItem(page);
    const stale = expected.filter((f) => f.expect === 'STALE').length;
    assert.match(statusBefore, new RegExp(`LoRA 9 · ${stale} stale · \\d+ diverged`));
  });

  it('shows every problem file in the Problems panel', async () => {
    await page.keyboard.press('Control+Shift+M');
    await page.waitForSelector('.markers-panel .monaco-list-row', { timeout: 30_000 });
    await waitUntil(
      page,
      `the Problems tab to count ${problems}`,
      async () => (await problemsBadge(page)) === problems,
    );
    // The list is virtual: filter it the way a user would, to the stale copy of LoRA_A.
    const filter = page
      .locator('.markers-panel-container .viewpane-filter input, .panel .viewpane-filter input')
      .first();
    await filter.fill('LoRA_A_4d5e6f');
    const row = page.locator('.markers-panel .monaco-list-row', { hasText: /stale/i }).first();
    await row.waitFor({ timeout: 10_000 });
    const label = (await row.getAttribute('aria-label')) ?? '';
    assert.match(label, /stale: 4 of 4 tensors differ from ⭐_AKTIF_EN_IYILER\/LoRA_A\.pt/, label);
    assert.match(label, /generated by lora-sync/);
    await filter.fill('');
    await waitUntil(page, 'the filter to clear', async () => (await problemsBadge(page)) === problems);
  });

  it('shows the copy map in the LoRA Sync view, with a status icon per copy', async () => {
    await page.locator('.activitybar .action-item a[aria-label^="LoRA Sync"]').click({ force: true });
    const row = (name: string) => page.locator('.part.sidebar .monaco-list-row', { hasText: name }).first();
    await row('LoRA_A_4d5e6f.pt').waitFor({ timeout: 30_000 });
    const icon = async (name: string) =>
      (await row(name).locator('.custom-view-tree-node-item-icon').getAttribute('class')) ?? '';
    assert.match(await icon('LoRA_A_4d5e6f.pt'), /codicon-sync\b/, 'stale copy');
    assert.match(await icon('LoRA_A_0d0e0f.pt'), /codicon-git-compare\b/, 'diverged copy');
    assert.match(await icon('LoRA_A.pt'), /codicon-star-full\b/, 'source');
    assert.match(await icon('LoRA_A_1a2b3c.pt'), /codicon-pass\b/, 'copy in sync');
    const activity = page.locator('.activitybar .action-item a[aria-label^="LoRA Sync"]');
    await waitUntil(
      page,
      'the activity-bar badge',
      async () => (await activity.getAttribute('aria-label')) === `LoRA Sync - ${problems} files need attention`,
    );
    await page.mouse.move(900, 300); // no tooltip over the screenshot
    await page.waitForTimeout(500);
    await page.screenshot({ path: join(SHOTS, '1-before-sync.png') });
  });

  it('"LoRA Sync: Sync All" typed in the command palette syncs, with a progress notification', async () => {
    // Every notification text that appears, even for a moment (the sync of a small workspace is quick).
    // A string, not a function: the test runner's transpiler would add helpers the page lacks.
    await page.evaluate(`(() => {
      const seen = (window.__seen = []);
      const note = () => {
        for (const el of document.querySelectorAll('.notifications-toasts .notification-list-item-message')) {
          const t = (el.textContent || '').trim();
          if (t && !seen.includes(t)) seen.push(t);
        }
      };
      new MutationObserver(note).observe(document.body, { subtree: true, childList: true, characterData: true });
    })()`);
    await page.keyboard.press('Control+Shift+P');
    await page.waitForSelector('.quick-input-widget input', { state: 'visible' });
    await page.keyboard.type('LoRA Sync: Sync All', { delay: 25 });
    const first = page.locator('.quick-input-widget .monaco-list-row').first();
    await waitUntil(page, 'the palette to offer "LoRA Sync: Sync All"', async () =>
      /LoRA Sync: Sync All/.test((await first.getAttribute('aria-label')) ?? ''),
    );
    await page.keyboard.press('Enter');
    await waitUntil(page, 'the sync to report', async () => {
      const seen = await page.evaluate<string[]>('window.__seen');
      return seen.some((t) => /LoRA Sync: \d+ synced, 0 failed/.test(t));
    });
    const seen = await page.evaluate<string[]>('window.__seen');
    assert.ok(
      seen.some((t) => /Syncing all LoRAs/.test(t)),
      `a progress notification was shown (saw: ${seen.join(' | ')})`,
    );
  });

  it('leaves in the Problems panel only what needs a person, and the status bar says so', async () => {
    await waitUntil(
      page,
      `the Problems tab to count ${remaining}`,
      async () => (await problemsBadge(page)) === remaining,
    );
    await waitUntil(
      page,
      'the status-bar item to drop the stale copies it synced',
      async () => (await loraStatusItem(page)) !== statusBefore,
    );
    const after = await loraStatusItem(page);
    const blocked = expected.filter((f) => f.expect === 'STALE' && f.sync_blocked).length;
    assert.match(after, new RegExp(`LoRA 9 · ${blocked} stale · \\d+ diverged`));
    // The History view lists the sync.
    const history = page.locator('.part.sidebar .pane', { hasText: /HISTORY/i });
    await waitUntil(
      page,
      'the History view to list the sync',
      async () => (await history.locator('.monaco-list-row', { hasText: 'FULL_SYNC' }).count()) > 0,
    );
    await page.mouse.move(900, 300);
    await page.waitForTimeout(500);
    await page.screenshot({ path: join(SHOTS, '2-after-sync.png') });
  });

  it('opens a diverged copy from the Copy Map in the LoRA inspector, readable in light, dark and high-contrast themes', async () => {
    await page.locator('.part.sidebar .monaco-list-row', { hasText: 'LoRA_A_0d0e0f.pt' }).first().click();
    const frame = await webviewFrame(page, 'section[aria-label="Status"]');
    const text = (sel: string) => frame.locator(sel).first().innerText();
    assert.match(await text('section[aria-label="Status"]'), /^Diverged: this copy changed on its own/);
    assert.match(await text('body'), /⭐_AKTIF_EN_IYILER\/LoRA_A\.pt/, 'names its source');
    // Per-tensor difference from the source, and the copy's own keys marked in the metadata.
    assert.ok(await frame.locator('table').first().count(), 'a tensor table');
    assert.match(await text('table'), /layers\.0\.lora_A/);
    assert.match(
      await text('table'),
      /layers\.0\.lora_A\tfloat32\t\[4, 16\]\t64\t256 B\t[0-9a-f]{16}\tmax \|Δ\| [\d.]+, 64 of 64 elements/,
    );
    assert.ok(await frame.locator('svg.chart').count(), 'the fitness_history chart');
    assert.match(await text('body'), /team copy key str "İstanbul_Başakşehir"/, "the copy's own keys are marked");
    assert.ok(await frame.locator('button[data-action="syncCopy"]').count(), 'a button to sync this copy');
    assert.ok(await frame.locator('button[data-action="openSource"]').count(), 'a button to open the source');
    // The whole editor area for the pictures: no panel, no toasts.
    await runCommand(page, 'View: Hide Panel');
    await runCommand(page, 'Notifications: Clear All Notifications');
    await page.mouse.move(900, 300);
    await page.screenshot({ path: join(SHOTS, '3-inspector-light.png') });
    const background = async () => frame.evaluate('getComputedStyle(document.body).backgroundColor') as Promise<string>;
    const light = await background();
    for (const [theme, shot] of [
      ['Dark Modern', '4-inspector-dark.png'],
      ['Dark High Contrast', '5-inspector-high-contrast.png'],
    ]) {
      await pickTheme(page, theme);
      const f = await webviewFrame(page, 'section[aria-label="Status"]');
      const cls = (await f.evaluate('document.body.className')) as string;
      assert.match(cls, theme.includes('High') ? /vscode-high-contrast/ : /vscode-dark/, `${theme}: body class ${cls}`);
      assert.notEqual(
        await f.evaluate('getComputedStyle(document.body).backgroundColor'),
        light,
        `${theme}: the page follows the theme`,
      );
      await page.screenshot({ path: join(SHOTS, shot) });
    }
    await pickTheme(page, 'Light Modern');
  });
});
