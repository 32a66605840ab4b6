/** The inspector's fitness chart: `fitness_history` drawn as an inline SVG from the numbers. Pure functions. */
import type { InspectResult } from '../../../server/src/protocol/messages';
import { esc, numText, plural, thousands } from './htmlText';

const CHART_W = 600;
const CHART_H = 160;
const PAD = { left: 48, right: 12, top: 10, bottom: 22 };
const MAX_POINTS = 600;

/** `fitness_history` as an SVG line: gaps where a value is not a number; downsampled past MAX_POINTS. */
export function fitnessSvg(values: Array<number | null>): string {
  const pts = values.map((v, i) => ({ i, v })).filter((p): p is { i: number; v: number } => p.v !== null);
  if (!pts.length) return '<p class="muted">No numeric values.</p>';
  let min = Math.min(...pts.map((p) => p.v));
  let max = Math.max(...pts.map((p) => p.v));
  if (min === max) {
    min -= 1;
    max += 1;
  }
  const n = values.length;
  const x = (i: number) =>
    PAD.left + (n === 1 ? (CHART_W - PAD.left - PAD.right) / 2 : (i / (n - 1)) * (CHART_W - PAD.left - PAD.right));
  const y = (v: number) => PAD.top + (1 - (v - min) / (max - min)) * (CHART_H - PAD.top - PAD.bottom);
  const step = Math.max(1, Math.ceil(n / MAX_POINTS));
  const shown: number[] = [];
  for (let i = 0; i < n; i += step) shown.push(i);
  if (shown[shown.length - 1] !== n - 1) shown.push(n - 1);
  // Runs of consecutive numbers become one polyline each; a lone number, a dot.
  const lines: string[] = [];
  let run: string[] = [];
  const flush = () => {
    if (run.length > 1) lines.push(`<polyline class="chart-line" fill="none" points="${run.join(' ')}"/>`);
    else if (run.length === 1) {
      const [cx, cy] = run[0].split(',');
      lines.push(`<circle class="chart-dot" cx="${cx}" cy="${cy}" r="2"/>`);
    }
    run = [];
  };
  for (const i of shown) {
    const v = values[i];
    if (v === null) flush();
    else run.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  }
  flush();
  const dots =
    n <= 60
      ? pts
          .map(
            (p) =>
              `<circle class="chart-dot" cx="${x(p.i).toFixed(1)}" cy="${y(p.v).toFixed(1)}" r="2.5"><title>#${p.i}: ${esc(numText(p.v))}</title></circle>`,
          )
          .join('')
      : '';
  const axis =
    `<line class="chart-axis" x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${CHART_H - PAD.bottom}"/>` +
    `<line class="chart-axis" x1="${PAD.left}" y1="${CHART_H - PAD.bottom}" x2="${CHART_W - PAD.right}" y2="${CHART_H - PAD.bottom}"/>`;
  const labels =
    `<text class="chart-label" x="${PAD.left - 4}" y="${PAD.top + 8}" text-anchor="end">${esc(numText(max))}</text>` +
    `<text class="chart-label" x="${PAD.left - 4}" y="${CHART_H - PAD.bottom}" text-anchor="end">${esc(numText(min))}</text>` +
    `<text class="chart-label" x="${PAD.left}" y="${CHART_H - 6}">0</text>` +
    `<text class="chart-label" x="${CHART_W - PAD.right}" y="${CHART_H - 6}" text-anchor="end">${esc(n - 1)}</text>`;
  const desc = `fitness over ${n} steps, from ${numText(pts[0].v)} to ${numText(pts[pts.length - 1].v)}, min ${numText(Math.min(...pts.map((p) => p.v)))}, max ${numText(Math.max(...pts.map((p) => p.v)))}`;
  return `<svg class="chart" viewBox="0 0 ${CHART_W} ${CHART_H}" role="img" aria-label="${esc(desc)}"><title>${esc(desc)}</title>${axis}${lines.join('')}${dots}${labels}</svg>`;
}

export function fitnessSection(f: NonNullable<InspectResult['fitness']>): string {
  const nums = f.values.filter((v): v is number => v !== null);
  const last = nums.length ? numText(nums[nums.length - 1]) : '–';
  const best = nums.length ? numText(Math.max(...nums)) : '–';
  const cut = f.total > f.values.length ? ` (the last ${thousands(f.values.length)} of ${thousands(f.total)})` : '';
  return `<section aria-label="Fitness history">
<h2>Fitness history <span class="muted">${esc(f.path)}: ${esc(plural(f.total, 'value'))}${esc(cut)}, last ${esc(last)}, best ${esc(best)}</span></h2>
${fitnessSvg(f.values)}
</section>`;
}
