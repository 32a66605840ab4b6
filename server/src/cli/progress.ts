/**
 * One progress line on stderr while a scan, verify or sync runs: files done / total, the phase, the
 * rate and the time left, redrawn at most ten times a second and only once the work has run for half
 * a second (short runs stay silent), then cleared. Only on a terminal: never in a pipe, a log or CI,
 * and never with --json, --format sarif or --quiet (the caller passes `enabled`).
 */
import { thousands } from '../protocol/thousands';

export interface ProgressSink {
  isTTY?: boolean;
  columns?: number;
  write(s: string): unknown;
}

export class Progress {
  private phase = '';
  private done = 0;
  private total?: number;
  private phaseStart = Date.now();
  private readonly started = Date.now();
  private lastDraw = 0;
  private shown = false;
  private note = '';
  /** Redraws while no event comes (listing a large folder reports nothing until it ends). */
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly out: ProgressSink,
    readonly enabled: boolean,
    private readonly delayMs = 500,
  ) {}

  /** A new phase ("listing", "reading", "syncing"); the counts start again. */
  start(phase: string, total?: number): void {
    this.phase = phase;
    this.done = 0;
    this.total = total;
    this.phaseStart = Date.now();
    if (this.enabled && !this.timer) {
      this.timer = setInterval(() => this.draw(true), 250);
      this.timer.unref();
    }
    this.draw(true);
  }

  update(done: number, total?: number): void {
    this.done = done;
    if (total !== undefined) this.total = total;
    this.draw(false);
  }

  /** A word that stays on the line until the end ("stopping after the copies in flight"). */
  say(note: string): void {
    this.note = note;
    this.draw(true);
  }

  /** Clears the line (nothing of it stays on the terminal). */
  clear(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.shown) this.out.write('\r\x1b[K');
    this.shown = false;
  }

  /** The line as drawn (without the carriage return), for tests and for `draw`. */
  line(now = Date.now()): string {
    const parts = [this.phase];
    if (this.total !== undefined) {
      parts.push(`${fmt(this.done)}/${fmt(this.total)} files`);
      if (this.total > 0) parts.push(`${Math.floor((this.done / this.total) * 100)}%`);
    } else if (this.done) parts.push(`${fmt(this.done)} files`);
    const secs = (now - this.phaseStart) / 1000;
    if (this.done > 0 && secs > 0.2) {
      const rate = this.done / secs;
      parts.push(`${fmt(Math.round(rate))} files/s`);
      if (this.total !== undefined && this.total > this.done)
        parts.push(`${duration((this.total - this.done) / rate)} left`);
    }
    if (this.note) parts.push(this.note);
    return parts.join('  ');
  }

  private draw(force: boolean): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.started < this.delayMs) return;
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const cols = this.out.columns || 80; // 0 where the terminal does not say (script, some CI PTYs)
    this.out.write(`\r\x1b[K${this.line(now).slice(0, Math.max(10, cols - 1))}`);
    this.shown = true;
  }
}

/** Whether a command shows progress: stderr is a terminal, and the output is for people. */
export function progressWanted(stderr: { isTTY?: boolean }, o: { quiet?: boolean; format: string }): boolean {
  return !!stderr.isTTY && !o.quiet && o.format === 'text';
}

const fmt = thousands;

function duration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 60) return `${Math.ceil(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.ceil(s % 60)} s`;
}
