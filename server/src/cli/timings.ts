/**
 * `--timings`: where a command's wall time went, one line on stderr when it ends — start-up (Node and
 * the bundle, up to the command), each phase of its scans (engine/workspace.ts ScanTimings), and the
 * command's own work after them (a verify's checks, a sync's writes, the report) — and the process's
 * peak memory. For a user asking why a scan is slow or large, and for `npm run bench:budget` and
 * `npm run bench`, which read the line of a cold verify and of a cold `status --json`.
 */
import type { ScanSummary, ScanTimings } from '../engine/workspace';
import { peakRssMB } from '../io/peakRss';
import { thousands } from '../protocol/thousands';

const PHASES: Array<keyof ScanTimings> = ['list', 'keys', 'read', 'statuses', 'cache'];

export class Timings {
  private readonly phases: ScanTimings = { list: 0, keys: 0, read: 0, statuses: 0, cache: 0 };
  private files = 0;
  private read = 0;

  /** `startUp`: wall ms from the process's start to the command (performance.now() counts from the start). */
  constructor(private readonly startUp = performance.now()) {}

  /** A scan the command ran. Each command runs one today; should one run more, their phases and counts add up. */
  scanned(s: ScanSummary): void {
    for (const p of PHASES) this.phases[p] += s.timings[p];
    this.files += s.files;
    this.read += s.read;
  }

  /**
   * The line, as of `now`, with `peakMB` (the process's peak resident memory); "the command" is what
   * is left of the total once start-up and the scans are counted.
   */
  line(now = performance.now(), peakMB = peakRssMB()): string {
    const ms = thousands;
    const scans = PHASES.reduce((a, p) => a + this.phases[p], 0);
    const rest = Math.max(0, now - this.startUp - scans);
    const parts = PHASES.map((p) =>
      p === 'read'
        ? `read ${ms(this.phases.read)} (${ms(this.read)} of ${ms(this.files)} files)`
        : `${p} ${ms(this.phases[p])}`,
    );
    return `timings (wall ms): start-up ${ms(this.startUp)}, ${parts.join(', ')}, the command ${ms(rest)}; total ${ms(now)}; peak RSS ${ms(peakMB)} MB`;
  }
}
