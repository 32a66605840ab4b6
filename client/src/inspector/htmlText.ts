/** Text helpers of the inspector page: escaping, sizes, numbers, counts. Pure functions. */

/** Escapes text for element content and quoted attribute values alike. */
import { thousands } from '../../../server/src/protocol/thousands';
export function esc(s: unknown): string {
  return String(s).replace(/[&<>"'`]/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function bytesText(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** A difference or a fitness value, short: 4 significant digits, exponent when tiny or huge. */
export function numText(x: number): string {
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a < 1e-3 || a >= 1e6) return x.toExponential(2);
  return String(Number(x.toPrecision(4)));
}

// One way of writing whole numbers for the CLI, the server's logs and the inspector.
export { thousands };
export const plural = (n: number, w: string) => `${thousands(n)} ${w}${n === 1 ? '' : 's'}`;
