/**
 * The LoRA inspector's page, from the server's view model. Pure (no `vscode` import), so it is
 * tested as a function: everything from the file is escaped, the only script is ours and carries
 * the nonce the Content-Security-Policy names, no inline styles or handlers (the CSP forbids them),
 * and the fitness chart is inline SVG drawn here from the numbers. Interaction (sorting and
 * filtering the tensor table, the buttons) is media/inspector.js.
 */
import type { InspectResult } from '../../../server/src/protocol/messages';
import type { InspectHashes, MetaNode, TensorDiff, TensorRow } from '../../../server/src/protocol/inspect';
import type { FileReport } from '../../../server/src/protocol/reports';
import { factsOf, type ReportStatus, type Severity } from '../../../server/src/protocol/statusTable';
import { IDENTIFIED_BY_WORDS, LAYOUT_WORDS } from '../copyMapModel';
import { fitnessSection } from './fitnessChart';
import { bytesText, esc, numText, plural, thousands } from './htmlText';

export { bytesText, esc, numText } from './htmlText';
export { fitnessSvg } from './fitnessChart';

/** What the copy map says of the same file (how it was identified, its layout, unit and version). */
export type FileFacts = Pick<FileReport, 'identified_by' | 'layout' | 'unit' | 'version' | 'why'>;

export interface PageContext {
  /** `webview.cspSource`. */
  cspSource: string;
  /** Fresh per render: only scripts carrying it run. */
  nonce: string;
  /** Webview URIs of media/inspector.js and media/inspector.css. */
  scriptUri: string;
  styleUri: string;
  /** The workspace is trusted: sync may write. */
  canWrite: boolean;
}

export function csp(ctx: PageContext): string {
  return `default-src 'none'; style-src ${ctx.cspSource}; script-src 'nonce-${ctx.nonce}'; img-src ${ctx.cspSource} data:;`;
}

function page(ctx: PageContext, title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${esc(csp(ctx))}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="${esc(ctx.styleUri)}">
<title>${esc(title)}</title>
</head>
<body>
${body}
<script nonce="${esc(ctx.nonce)}" src="${esc(ctx.scriptUri)}"></script>
</body>
</html>`;
}

/** While the server answers. */
export function loadingHtml(ctx: PageContext, file: string): string {
  return page(ctx, file, `<main class="message"><p class="muted">Reading ${esc(file)}…</p></main>`);
}

/** The request failed (server not running, file outside the workspace folders, ...). */
export function errorHtml(ctx: PageContext, file: string, message: string): string {
  return page(
    ctx,
    file,
    `<main class="message">
<h1>${esc(file)}</h1>
<div class="banner error" role="alert"><strong>The LoRA inspector cannot show this file.</strong><p>${esc(message)}</p></div>
<p><button type="button" data-action="refresh">Try again</button></p>
</main>`,
  );
}

type Tone = 'ok' | 'info' | 'warn' | 'error';
const TONE: Record<Severity, Tone> = { error: 'error', warning: 'warn', information: 'info' };

/** The page's colour for a status: its severity's; sound files ok; untracked and unrecognized files info. */
function toneOf(status: ReportStatus | null): Tone {
  if (status === null) return 'info';
  const facts = factsOf(status);
  return facts.severity ? TONE[facts.severity] : facts.sound ? 'ok' : 'info';
}

const ROLE_WORDS: Record<string, string> = {
  source: 'source',
  copy: 'copy',
  unreadable: 'unreadable',
  'not-lora': 'not a LoRA',
};

const shapeText = (s: number[]) => `[${s.join(', ')}]`;
const baseName = (p: string) => p.slice(p.lastIndexOf('/') + 1);

export function inspectorHtml(m: InspectResult, ctx: PageContext, file?: FileFacts): string {
  const body = [
    header(m, ctx, file),
    banners(m),
    statusSection(m),
    facts(m, file),
    m.hashes ? hashesSection(m.hashes) : '',
    m.fitness ? fitnessSection(m.fitness) : '',
    tensorSection(m),
    metadataSection(m),
  ].join('\n');
  return page(ctx, baseName(m.path), `<main>\n${body}\n</main>`);
}

/** The model's own `identity.from` in the words the copy map's `identified_by` uses. */
const FROM_WORDS: Record<string, string> = {
  ...IDENTIFIED_BY_WORDS,
  metadata: IDENTIFIED_BY_WORDS.metadata_id,
  filename: IDENTIFIED_BY_WORDS.file_name,
  layout: IDENTIFIED_BY_WORDS.layout_name,
};

/** How the file was tied to its LoRA, in words: the copy map's `identified_by`, else the model's `identity.from`. */
export function identifiedByText(m: InspectResult, file?: FileFacts): string | undefined {
  const key = file?.identified_by ?? m.identity.from ?? undefined;
  return key ? `identified by ${FROM_WORDS[key] ?? key}` : undefined;
}

function header(m: InspectResult, ctx: PageContext, file?: FileFacts): string {
  const status = m.status ?? 'UNTRACKED';
  const sev = toneOf(m.status);
  const id = m.identity;
  const how = identifiedByText(m, file);
  const who =
    id.name || id.id
      ? `<span class="name">${esc(id.name ?? '')}</span>${id.id ? ` <code>${esc(id.id)}</code>` : ''}${how ? ` <span class="muted">(${esc(how)})</span>` : ''}`
      : '<span class="muted">no LoRA identity</span>';
  const buttons: string[] = [];
  if (m.role === 'copy') {
    // A sync writes it, or writes it only when forced (after a confirmation).
    const rule = m.status === null ? 'never' : factsOf(m.status).sync;
    const can = ctx.canWrite && m.tracked && rule !== 'never';
    const force = rule === 'force';
    const why = !ctx.canWrite
      ? 'The workspace is not trusted: LoRA Sync does not write here'
      : !m.tracked
        ? 'This file is not tracked by LoRA Sync'
        : can
          ? force
            ? 'Overwrite this copy with its source (a backup is kept); asks first'
            : "Write the source's tensors and general metadata into this copy, keeping its own keys"
          : `Nothing to sync (${m.status ?? 'no status'})`;
    buttons.push(
      `<button type="button" data-action="syncCopy" title="${esc(why)}"${can ? '' : ' disabled'}>${force ? 'Force sync this copy…' : 'Sync this copy'}</button>`,
    );
  }
  if (m.source)
    buttons.push(
      `<button type="button" class="secondary" data-action="openSource" title="${esc(m.source.path)}">Open source</button>`,
    );
  buttons.push('<button type="button" class="secondary" data-action="reveal">Reveal in Explorer</button>');
  buttons.push('<button type="button" class="secondary" data-action="refresh">Refresh</button>');
  return `<header>
<div class="title">
<h1>${esc(baseName(m.path))}</h1>
<div class="path muted">${esc(m.path)}</div>
<div class="identity">${who} <span class="badge role">${esc(ROLE_WORDS[m.role] ?? m.role)}</span> <span class="badge status ${sev}">${esc(status)}</span></div>
</div>
<div class="actions">${buttons.join('')}</div>
</header>`;
}

function banners(m: InspectResult): string {
  const out: string[] = [];
  if (m.changedOnDisk)
    out.push(
      '<div class="banner info" role="status">This file changed since LoRA Sync last read it. The view follows once it has settled.</div>',
    );
  if (!m.tracked)
    out.push(
      '<div class="banner info" role="status">Not tracked: this file is outside the include/exclude globs or in a hidden folder. Shown for inspection only.</div>',
    );
  if (m.error)
    out.push(
      `<div class="banner error" role="alert"><strong>${esc(m.error.code)}</strong> ${esc(m.error.message)}</div>`,
    );
  if (!m.safety.safe) {
    const items = m.safety.unsafe.map((u) => `<li><code>${esc(u.global)}</code>: ${esc(u.detail)}</li>`).join('');
    out.push(
      `<div class="banner error" role="alert"><strong>Unsafe: never load this file with torch.load.</strong> Its pickle names code outside the data-only allowlist. LoRA Sync read it without running anything, never writes it and never copies it.<ul>${items}</ul></div>`,
    );
  }
  return out.join('\n');
}

function statusSection(m: InspectResult): string {
  const words = m.status === null ? 'Not tracked by LoRA Sync' : factsOf(m.status).explanation;
  const shown = m.issues.slice(0, 50);
  const issues = shown.length
    ? `<ul class="issues">${shown.map((i) => `<li><code>${esc(i.type)}</code>${i.param ? ` <span class="param">${esc(i.param)}</span>` : ''}: ${esc(i.detail)}</li>`).join('')}${m.issues.length > shown.length ? `<li class="muted">… ${m.issues.length - shown.length} more</li>` : ''}</ul>`
    : '';
  const source = m.source
    ? `<p>Source: <code>${esc(m.source.path)}</code>${m.source.status && m.source.status !== 'SOURCE' ? ` <span class="badge status ${toneOf(m.source.status)}">${esc(m.source.status)}</span>` : ''}</p>`
    : '';
  return `<section class="status ${toneOf(m.status)}" aria-label="Status">
<h2>${esc(words)}</h2>
<p class="message">${esc(m.message)}</p>
${source}${issues}
</section>`;
}

function facts(m: InspectResult, file?: FileFacts): string {
  const rows: Array<[string, string]> = [
    ['Format', m.format ? esc(m.format) : '<span class="muted">unknown</span>'],
    ['Size', `${esc(bytesText(m.size))} <span class="muted">(${esc(thousands(m.size))} bytes)</span>`],
    ['Modified', esc(m.mtime)],
  ];
  const how = identifiedByText(m, file);
  if (how) rows.push(['Identity', esc(how)]);
  if (file?.layout) rows.push(['Layout', esc(LAYOUT_WORDS[file.layout] ?? file.layout)]);
  if (file?.unit?.kind === 'folder')
    rows.push(['Unit', `the folder <code>${esc(file.unit.path)}</code> <span class="muted">(synced as one)</span>`]);
  if (file?.version) rows.push(['Version', esc(file.version)]);
  if (file?.why) rows.push(['Not a LoRA', esc(file.why)]);
  if (m.syncInfo) {
    const s = m.syncInfo;
    const parts = [
      s.lastSyncMatch !== undefined ? `match ${esc(s.lastSyncMatch)}` : '',
      s.lastSyncTime ? esc(s.lastSyncTime) : '',
      s.reason ? esc(s.reason) : '',
      s.byLoraSync ? 'written by LoRA Sync' : 'not written by LoRA Sync',
    ].filter(Boolean);
    rows.push(['Last sync', parts.join(' · ')]);
  }
  rows.push(['Digests', `<code>${esc(m.digestAlg)}</code>`]);
  return `<section aria-label="File"><dl class="facts">${rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl></section>`;
}

// ---- ecosystem hashes --------------------------------------------------------------------------

/** A hash shortened as the ecosystem shows it, the full value in the title. */
function shortHash(full: string, n: number): string {
  return `<code title="${esc(full)}">${esc(full.slice(0, n))}</code>`;
}

/**
 * AutoV2 (A1111 / Civitai, 10 hex), AutoV3 (kohya's addnet hash, 12 hex), A1111's legacy hash, the
 * SHA-256, and each embedded hash that does not match the file.
 */
export function hashesSection(h: InspectHashes): string {
  const rows: Array<[string, string]> = [['AutoV2', shortHash(h.sha256, 10)]];
  if (h.autoV3) rows.push(['AutoV3', shortHash(h.dataSha256 ?? h.autoV3, 12)]);
  // The legacy hash reads a 64 KiB window at 1 MiB: a smaller file has none that means anything.
  if (h.legacyWindowBytes === 65536) rows.push(['Legacy (A1111)', `<code>${esc(h.legacy)}</code>`]);
  rows.push(['SHA-256', `<code>${esc(h.sha256)}</code>`]);
  const bad = h.embeddedMismatches
    .map(
      (e) =>
        `<li class="hash-bad"><span class="mark" role="img" aria-label="does not match">✗</span> <code>${esc(e.key)}</code> <code class="digest">${esc(e.embedded)}</code> <span class="muted">${esc(e.detail)}</span></li>`,
    )
    .join('');
  return `<section aria-label="Ecosystem hashes">
<h2>Ecosystem hashes</h2>
<dl class="facts">${rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl>
${bad ? `<p class="muted">Hashes in the file's own metadata that do not match it:</p><ul class="hashes">${bad}</ul>` : ''}
</section>`;
}

// ---- tensors -----------------------------------------------------------------------------------

/** Sort rank of a difference: the most serious first. */
const DIFF_RANK: Record<string, number> = { missing: 0, extra: 1, shape: 2, dtype: 3, differs: 4, equal: 5 };

export function diffText(d: TensorDiff): string {
  switch (d.kind) {
    case 'equal':
      return 'equal';
    case 'missing':
      return 'missing from this copy';
    case 'extra':
      return 'only in this copy';
    case 'shape':
      return `shape differs: source ${shapeText(d.source?.shape ?? [])}`;
    case 'dtype':
      return `dtype differs: source ${d.source?.dtype ?? '?'}`;
    case 'differs': {
      if (!d.compared) return `differs (digest)${d.note ? `: ${d.note}` : ''}`;
      const max = d.maxAbsDiff === 'inf' ? '∞' : numText(d.maxAbsDiff ?? 0);
      const count =
        d.differing !== undefined && d.numel !== undefined
          ? `, ${thousands(d.differing)} of ${thousands(d.numel)} elements`
          : '';
      const nan = d.nanMismatches ? `, ${thousands(d.nanMismatches)} NaN on one side` : '';
      return `max |Δ| ${max}${count}${nan}${d.note ? ` (${d.note})` : ''}`;
    }
  }
}

function tensorRow(r: TensorRow, i: number, withDiff: boolean): string {
  const d = r.diff;
  const delta =
    d?.kind === 'differs' && d.compared ? (d.maxAbsDiff === 'inf' ? Number.MAX_VALUE : (d.maxAbsDiff ?? 0)) : -1;
  const flags = [r.parameter ? 'Parameter' : '', r.view ? 'view' : '']
    .filter(Boolean)
    .map((f) => ` <span class="flag">${f}</span>`)
    .join('');
  const cells = [
    `<td class="name">${esc(r.name || '<root>')}${flags}</td>`,
    `<td>${esc(r.dtype)}</td>`,
    `<td>${esc(shapeText(r.shape))}</td>`,
    `<td class="num">${esc(thousands(r.numel))}</td>`,
    `<td class="num">${esc(bytesText(r.bytes))}</td>`,
    `<td class="digest">${r.digest ? `<code title="${esc(r.digest)}">${esc(r.digest.slice(0, 16))}</code>` : '<span class="muted">–</span>'}</td>`,
  ];
  if (withDiff) cells.push(`<td class="diff ${esc(d?.kind ?? 'none')}">${d ? esc(diffText(d)) : ''}</td>`);
  const attrs = `data-index="${i}" data-name="${esc(r.name.toLowerCase())}" data-dtype="${esc(r.dtype)}" data-numel="${r.numel}" data-bytes="${r.bytes}" data-diff="${d ? DIFF_RANK[d.kind] : 9}" data-delta="${delta}" data-differs="${d && d.kind !== 'equal' ? 1 : 0}"`;
  return `<tr ${attrs}${r.absent ? ' class="absent"' : ''}>${cells.join('')}</tr>`;
}

function tensorSection(m: InspectResult): string {
  if (!m.tensors.length)
    return `<section aria-label="Tensors"><h2>Tensors</h2><p class="muted">${m.error ? 'None could be read.' : 'This file holds no tensors.'}</p></section>`;
  const withDiff = !!m.diff;
  const total = m.tensors.filter((t) => !t.absent).reduce((n, t) => n + t.bytes, 0);
  let summary = esc(
    `${plural(m.tensors.filter((t) => !t.absent).length + m.tensorsLeftOut, 'tensor')}, ${bytesText(total)}`,
  );
  let diffLine = '';
  if (m.diff) {
    const c = m.diff.counts;
    const parts = [
      c.equal ? `${c.equal} equal` : '',
      c.differs ? `${c.differs} differ` : '',
      c.shape ? `${c.shape} shape` : '',
      c.dtype ? `${c.dtype} dtype` : '',
      c.missing ? `${c.missing} missing` : '',
      c.extra ? `${c.extra} extra` : '',
    ].filter(Boolean);
    summary += `; against <code>${esc(m.diff.against)}</code>: ${esc(parts.join(', ') || 'nothing to compare')}`;
    const budget = m.diff.budgetBytes === null ? 'no read limit' : `read limit ${bytesText(m.diff.budgetBytes)}`;
    diffLine =
      `<p class="muted">Values compared by streaming both files: ${esc(bytesText(m.diff.bytesRead))} read (${esc(budget)}).${m.diff.note ? ` ${esc(m.diff.note)}.` : ''}` +
      (m.diff.notCompared
        ? ` ${esc(plural(m.diff.notCompared, 'tensor'))} known to differ by digest only. <button type="button" class="secondary small" data-action="compareAll">Compare all values</button>`
        : '') +
      '</p>';
  }
  const th = (key: string, label: string, cls = '') =>
    `<th scope="col" data-sort="${key}"${cls ? ` class="${cls}"` : ''} tabindex="0" aria-sort="none">${label}</th>`;
  const head = [
    th('name', 'Name'),
    th('dtype', 'dtype'),
    th('numel', 'Shape'),
    th('numel', 'Elements', 'num'),
    th('bytes', 'Size', 'num'),
    '<th scope="col">Digest</th>',
    withDiff ? th('diff', 'Against the source') : '',
  ].join('');
  const left = m.tensorsLeftOut
    ? `<p class="muted">… ${esc(plural(m.tensorsLeftOut, 'more tensor'))} not listed.</p>`
    : '';
  return `<section aria-label="Tensors">
<h2>Tensors <span class="muted">${summary}</span></h2>
${diffLine}
<div class="table-tools"><input type="search" id="filter" placeholder="Filter by name" aria-label="Filter tensors by name">${withDiff ? '<label><input type="checkbox" id="only-diff"> only differences</label>' : ''}<span id="shown" class="muted"></span></div>
<table class="tensors">
<thead><tr>${head}</tr></thead>
<tbody>
${m.tensors.map((r, i) => tensorRow(r, i, withDiff)).join('\n')}
</tbody>
</table>
${left}
</section>`;
}

// ---- metadata ----------------------------------------------------------------------------------

const MARK_WORDS: Record<string, string> = { copy: 'copy key', ignored: 'ignored', differs: 'differs from source' };
const MARK_TITLES: Record<string, string> = {
  copy: "This copy's own key: a sync keeps it as it is",
  ignored: 'Left out of the comparison with the source',
  differs: 'Differs from the source',
};

function valueText(n: MetaNode): string {
  if (n.value === undefined) return '';
  return n.type === 'str' ? JSON.stringify(n.value) : n.value;
}

function metaNode(n: MetaNode, depth: number): string {
  const key = n.key !== undefined ? `<span class="key">${esc(n.key)}</span>` : '';
  const mark = n.mark
    ? ` <span class="badge mark ${n.mark}" title="${esc(MARK_TITLES[n.mark])}">${esc(MARK_WORDS[n.mark])}</span>`
    : '';
  const type = `<span class="type">${esc(n.type)}</span>`;
  const cls = n.mark ? ` class="marked ${n.mark}"` : '';
  if (!n.children) {
    const more = n.more ? ` <span class="muted">… ${esc(thousands(n.more))} more characters</span>` : '';
    return `<li${cls}>${key}${mark} ${type} <span class="value">${esc(valueText(n))}</span>${more}</li>`;
  }
  const more = n.more ? `<li class="muted">… ${esc(plural(n.more, 'more item'))} not shown</li>` : '';
  const open = depth < 2 ? ' open' : '';
  const kids = n.children.map((c) => metaNode(c, depth + 1)).join('');
  return `<li${cls}><details${open}><summary>${key}${mark} ${type} <span class="muted">${esc(n.value ?? '')}</span></summary><ul>${kids}${more}</ul></details></li>`;
}

function metadataSection(m: InspectResult): string {
  if (!m.metadata) return '';
  const legend =
    m.role === 'copy' || m.copyKeys.length
      ? `<p class="legend muted"><span class="badge mark copy">copy key</span> kept by a sync (${esc(m.copyKeys.join(', '))}) · <span class="badge mark ignored">ignored</span> left out of the comparison (${esc(m.ignoreKeys.join(', ') || 'none')}) · <span class="badge mark differs">differs from source</span></p>`
      : '';
  return `<section aria-label="Metadata">
<h2>Metadata</h2>
${legend}
<ul class="tree">${metaNode(m.metadata, 0)}</ul>
</section>`;
}
