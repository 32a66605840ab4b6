/**
 * Colour on a terminal, per the conventions of NO_COLOR (no-color.org: set and non-empty means no
 * colour) and FORCE_COLOR (as chalk and Node read it: set means colour, unless it is 0 or false).
 * FORCE_COLOR wins over NO_COLOR, as in Node's own tty.hasColors; otherwise colour only on a TTY
 * whose TERM is not "dumb". JSON and SARIF are never coloured: callers simply do not paint them.
 */
import { type CliColor, cliColorOf, type ReportStatus } from '../protocol/statusTable';

export function colourWanted(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  const force = env.FORCE_COLOR;
  if (force !== undefined) return !(force === '0' || force.toLowerCase() === 'false');
  if (env.NO_COLOR) return false;
  return !!stream.isTTY && env.TERM !== 'dumb';
}

const CODES: Record<CliColor | 'bold', [number, number]> = {
  red: [31, 39],
  yellow: [33, 39],
  green: [32, 39],
  cyan: [36, 39],
  blue: [34, 39],
  magenta: [35, 39],
  dim: [2, 22],
  bold: [1, 22],
};

export interface Painter {
  readonly on: boolean;
  paint(colour: CliColor | 'bold' | undefined, s: string): string;
  /** A status's words in its colour from the status table. */
  status(status: ReportStatus, s: string): string;
}

export function painter(on: boolean): Painter {
  const paint = (c: CliColor | 'bold' | undefined, s: string) =>
    on && c ? `\x1b[${CODES[c][0]}m${s}\x1b[${CODES[c][1]}m` : s;
  return { on, paint, status: (st, s) => paint(cliColorOf(st), s) };
}

/** For stdout: coloured when stdout is a terminal (or forced). */
export const stdoutPainter = (): Painter => painter(colourWanted(process.stdout));
