/**
 * The inspector's page (client/src/inspector/inspectorHtml.ts, a pure function) rendered from view
 * models of the torch-written fixture workspace: a strict CSP with a nonce that every script
 * carries, nothing inline the CSP would block, text from the file escaped (a metadata string that
 * is a `<script>` stays text), no tensor bytes, the copy's own keys marked, the buttons as the
 * status allows, the fitness chart drawn from the numbers.
 */
import { strict as assert } from 'node:assert';
import { rm } from 'node:fs/promises';
import { copyFixtureWorkspace } from '../support/files';
import { Workspace } from '../../server/src/engine/workspace';
import { inspectWorkspaceFile } from '../../server/src/lsp/views/inspectModel';
import { withCheckpoint } from '../../server/src/formats/checkpoint';
import { readTensorBytes } from '../../server/src/formats/fingerprint';
import type { InspectResult } from '../../server/src/protocol/messages';
import {
  errorHtml,
  esc,
  fitnessSvg,
  inspectorHtml,
  loadingHtml,
  type PageContext,
} from '../../client/src/inspector/inspectorHtml';

const SRC_A = '⭐_AKTIF_EN_IYILER/LoRA_A.pt';
const STALE = 'Manchester_United/🎯_WIN_EXPERTS/LoRA_A_4d5e6f.pt';
const DIVERGED = 'İstanbul_Başakşehir/🎯_DRAW_EXPERTS/LoRA_A_0d0e0f.pt';
const UNSAFE = 'Beşiktaş/🆚_VS_Galatasaray/LoRA_G_a0b0c0.pt';

const ctx: PageContext = {
  cspSource: 'https://file+.vscode-resource.vscode-cdn.net',
  nonce: 'bm9uY2Utb2YtdGhpcy1wYWdl',
  scriptUri: 'https://file+.vscode-resource.vscode-cdn.net/ext/media/inspector.js',
  styleUri: 'https://file+.vscode-resource.vscode-cdn.net/ext/media/inspector.css',
  canWrite: true,
};

/** What a strict CSP page must hold, whatever the model. */
function assertStrictPage(html: string): void {
  const meta = /<meta http-equiv="Content-Security-Policy" content="([^"]*)">/.exec(html);
  assert.ok(meta, 'a CSP meta tag');
  const policy = meta[1].replace(/&#39;/g, "'");
  assert.equal(
    policy,
    `default-src 'none'; style-src ${ctx.cspSource}; script-src 'nonce-${ctx.nonce}'; img-src ${ctx.cspSource} data:;`,
  );
  const scripts = html.match(/<script\b[^>]*>/g) ?? [];
  assert.ok(scripts.length >= 1);
  for (const s of scripts) assert.ok(s.includes(`nonce="${ctx.nonce}"`), s);
  assert.ok(!/<script\b[^>]*>[^<]+<\/script>/.test(html), 'no inline script body');
  // The CSP forbids inline styles and handlers: no tag may carry one (they would silently do nothing).
  for (const tag of html.match(/<[a-zA-Z][^>]*>/g) ?? []) {
    assert.ok(!/\sstyle=/i.test(tag), `style attribute in ${tag}`);
    assert.ok(!/\son[a-z]+=/i.test(tag), `event handler in ${tag}`);
    assert.ok(!/javascript:/i.test(tag), tag);
  }
}

describe('inspector page (inspectorHtml)', function () {
  this.timeout(60000);
  let dir: string;
  let ws: Workspace;
  const model = async (rel: string): Promise<InspectResult> => ({
    uri: 'file:///ws',
    root: dir,
    ...(await inspectWorkspaceFile(ws, ws.abs(rel))),
  });

  before(async () => {
    dir = await copyFixtureWorkspace('lora-inspect-html-');
    ws = await Workspace.open(dir);
    ws.setReadOnly();
    await ws.scan();
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('every page has the strict CSP, and its one script carries the nonce', async () => {
    for (const f of (await ws.report()).files) assertStrictPage(inspectorHtml(await model(f.path), ctx));
    assertStrictPage(loadingHtml(ctx, 'a.pt'));
    assertStrictPage(errorHtml(ctx, 'a.pt', 'the server is not running'));
    const html = inspectorHtml(await model(STALE), ctx);
    assert.ok(html.includes(`<link rel="stylesheet" href="${ctx.styleUri}">`));
    assert.ok(html.includes(`<script nonce="${ctx.nonce}" src="${ctx.scriptUri}"></script>`));
  });

  it('text from the file is escaped: a metadata string, a key, a tensor name, a path that hold markup stay text', async () => {
    const m = await model(STALE);
    const meta = m.metadata!.children!.find((c) => c.key === 'metadata')!;
    const team = meta.children!.find((c) => c.key === 'team')!;
    team.value = '<script>alert(1)</script>';
    meta.children!.push({ key: '"><img src=x onerror=alert(2)>', type: 'str', value: "'; alert(3); '" });
    m.tensors[0].name = '<b>layers</b>.0';
    m.path = 'evil/<iframe src=x>.pt';
    m.message = 'stale: </section><script>alert(4)</script>';
    m.issues[0].detail = '<img src=y>';
    const html = inspectorHtml(m, ctx);
    assertStrictPage(html);
    for (const bad of ['<script>alert', '<img src=x', '<img src=y', '<iframe', '<b>layers', '</section><script>'])
      assert.ok(!html.includes(bad), bad);
    assert.ok(html.includes('&#34;&#60;script&#62;alert(1)&#60;/script&#62;&#34;'), 'the string shown as text, quoted');
    assert.ok(html.includes('&#34;&#62;&#60;img src=x onerror=alert(2)&#62;'));
    assert.ok(html.includes('&#60;b&#62;layers&#60;/b&#62;.0'));
    assert.equal(
      esc(`<a href="x" title='y'>&</a>\``),
      '&#60;a href=&#34;x&#34; title=&#39;y&#39;&#62;&#38;&#60;/a&#62;&#96;',
    );
  });

  it('holds no tensor bytes', async () => {
    const m = await model(STALE);
    const html = inspectorHtml(m, ctx);
    const bytes = await withCheckpoint(ws.abs(STALE), async (c) =>
      Promise.all(c.tensors.map((t) => readTensorBytes(c, t))),
    );
    for (const b of bytes) {
      assert.ok(!html.includes(b.subarray(0, 12).toString('hex')), 'hex of tensor bytes');
      assert.ok(!html.includes(b.subarray(0, 12).toString('base64')), 'base64 of tensor bytes');
      const first = new Float32Array(b.buffer, b.byteOffset, 1)[0];
      assert.ok(!html.includes(String(first)), `a tensor value ${first}`);
    }
    assert.ok(html.length < 40000, `${html.length} characters`);
  });

  it("marks the copy's own keys and the ignored ones, with a legend", async () => {
    const html = inspectorHtml(await model(STALE), ctx);
    const copyKeys = [
      ...html.matchAll(/<li class="marked copy">(?:<details[^>]*><summary>)?<span class="key">([^<]*)<\/span>/g),
    ].map((x) => x[1]);
    assert.deepEqual(copyKeys, ['team', 'specialization_key', 'score', 'match_count', 'exported_at']);
    assert.ok(/<li class="marked ignored"><details[^>]*><summary><span class="key">sync_info<\/span>/.test(html));
    assert.ok(html.includes('class="legend'));
    const source = inspectorHtml(await model(SRC_A), ctx);
    assert.ok(!source.includes('class="marked copy"'));
  });

  it("says the status in words and each tensor's difference from the source", async () => {
    const html = inspectorHtml(await model(STALE), ctx);
    assert.ok(html.includes('Stale: the source moved on'));
    assert.ok(html.includes('stale: 4 of 4 tensors differ from ⭐_AKTIF_EN_IYILER/LoRA_A.pt'));
    assert.ok(html.includes('max |Δ| 3.667, 64 of 64 elements'));
    assert.ok(html.includes('against <code>⭐_AKTIF_EN_IYILER/LoRA_A.pt</code>: 4 differ'));
    const unsafe = inspectorHtml(await model(UNSAFE), ctx);
    assert.ok(unsafe.includes('never load this file with torch.load'));
    assert.ok(unsafe.includes('<code>__builtin__.eval</code>'));
  });

  it('offers sync as the status and trust allow', async () => {
    const button = (html: string) =>
      /<button type="button" data-action="syncCopy"[^>]*>[^<]*<\/button>/.exec(html)?.[0];
    const stale = button(inspectorHtml(await model(STALE), ctx))!;
    assert.ok(stale && !stale.includes('disabled') && stale.includes('>Sync this copy<'), stale);
    const untrusted = button(inspectorHtml(await model(STALE), { ...ctx, canWrite: false }))!;
    assert.ok(untrusted.includes('disabled') && untrusted.includes('not trusted'), untrusted);
    const diverged = button(inspectorHtml(await model(DIVERGED), ctx))!;
    assert.ok(diverged.includes('>Force sync this copy…<') && !diverged.includes('disabled'), diverged);
    const inSync = button(inspectorHtml(await model('💎_PERFECT_HYBRID_HALL/LoRA_A_1a2b3c.pt'), ctx))!;
    assert.ok(inSync.includes('disabled'), inSync);
    const source = inspectorHtml(await model(SRC_A), ctx);
    assert.equal(button(source), undefined);
    assert.ok(!source.includes('data-action="openSource"'));
    assert.ok(inspectorHtml(await model(STALE), ctx).includes('data-action="openSource"'));
  });

  it("says how the file was identified, its layout, unit and version (the copy map's words)", async () => {
    const m = await model(STALE);
    // Without the copy map's report: the model's own identity.from, in the same words.
    assert.ok(inspectorHtml(m, ctx).includes('(identified by its metadata id)'));
    const html = inspectorHtml(m, ctx, {
      identified_by: 'layout_name',
      layout: 'peft',
      unit: { kind: 'folder', path: 'deploy/prod/pixel_lora' },
      version: 'checkpoint-500',
    });
    assert.ok(html.includes('(identified by its layout&#39;s name)'), 'the header says how');
    assert.ok(html.includes('<dt>Identity</dt><dd>identified by its layout&#39;s name</dd>'));
    assert.ok(html.includes('<dt>Layout</dt><dd>PEFT adapter</dd>'));
    assert.ok(html.includes('<dt>Unit</dt><dd>the folder <code>deploy/prod/pixel_lora</code>'));
    assert.ok(html.includes('<dt>Version</dt><dd>checkpoint-500</dd>'));
    const notLora = inspectorHtml(m, ctx, { why: 'optimizer state <b>' });
    assert.ok(notLora.includes('<dt>Not a LoRA</dt><dd>optimizer state &#60;b&#62;</dd>'));
    assertStrictPage(html);
  });

  it('shows the ecosystem hashes (AutoV2 10 hex, AutoV3 12 hex, legacy) and each embedded one that does not match', async () => {
    const m = await model(SRC_A);
    assert.ok(m.hashes, 'the server computes them for a LoRA file');
    assert.ok(
      !inspectorHtml({ ...m, hashes: undefined }, ctx).includes('Ecosystem hashes'),
      'no section without hashes',
    );
    const sha = 'a'.repeat(8) + 'b'.repeat(56);
    const data = 'c'.repeat(12) + 'd'.repeat(52);
    const hashes = {
      sha256: sha,
      autoV2: sha.slice(0, 10),
      autoV3: data.slice(0, 12),
      dataSha256: data,
      legacy: '12345678',
      legacyWindowBytes: 65536,
      embeddedMismatches: [
        { key: 'sshs_legacy_hash', embedded: '0badc0de"><script>', actual: '12345678', detail: "is not this file's" },
      ],
    };
    const html = inspectorHtml({ ...m, hashes }, ctx);
    const section = /<section aria-label="Ecosystem hashes">[\s\S]*?<\/section>/.exec(html)?.[0];
    assert.ok(section, 'an Ecosystem hashes section');
    assert.ok(section.includes(`<dt>AutoV2</dt><dd><code title="${sha}">aaaaaaaabb</code></dd>`), section);
    assert.ok(section.includes(`<dt>AutoV3</dt><dd><code title="${data}">cccccccccccc</code></dd>`), section);
    assert.ok(section.includes('<dt>Legacy (A1111)</dt><dd><code>12345678</code></dd>'), section);
    assert.ok(section.includes(`<dt>SHA-256</dt><dd><code>${sha}</code></dd>`));
    assert.match(
      section,
      /<li class="hash-bad"><span class="mark" role="img" aria-label="does not match">✗<\/span> <code>sshs_legacy_hash<\/code> <code class="digest">0badc0de&#34;&#62;&#60;script&#62;<\/code>/,
    );
    // A file under 1 MiB has no meaningful legacy hash: not shown.
    const small = inspectorHtml({ ...m, hashes: { ...hashes, legacyWindowBytes: 0, embeddedMismatches: [] } }, ctx);
    assert.ok(!small.includes('Legacy (A1111)'));
    assert.ok(!small.includes('hash-bad'));
    // Not a table: the tensor table stays the page's first.
    assert.ok(!section.includes('<table'));
    assertStrictPage(html);
  });

  it('draws fitness_history as an SVG line from the numbers, with gaps where an item is not a number', async () => {
    const html = inspectorHtml(await model(SRC_A), ctx);
    const line = /<polyline class="chart-line" fill="none" points="([^"]*)"\/>/.exec(html);
    assert.ok(line);
    const pts = line[1].split(' ').map((p) => p.split(',').map(Number));
    assert.equal(pts.length, 3);
    // Rising values (0.1, 0.2, 0.3): y falls left to right; x evenly spaced.
    assert.ok(pts[0][1] > pts[1][1] && pts[1][1] > pts[2][1]);
    assert.ok(Math.abs(pts[1][0] - pts[0][0] - (pts[2][0] - pts[1][0])) < 0.2);
    assert.ok(html.includes('3 values, last 0.3, best 0.3'));
    const gaps = fitnessSvg([1, 2, null, 3, 4, null, 5]);
    assert.equal(gaps.match(/<polyline/g)!.length, 2);
    assert.equal(gaps.match(/<circle class="chart-dot" cx="[^"]*" cy="[^"]*" r="2"\/>/g)!.length, 1); // the lone 5
    const long = fitnessSvg(Array.from({ length: 10000 }, (_, i) => Math.sin(i / 100)));
    assert.ok(long.match(/<polyline[^>]*points="([^"]*)"/)![1].split(' ').length <= 601);
  });
});
