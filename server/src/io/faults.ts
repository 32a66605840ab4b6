/**
 * Fault injection for the reliability suite (test/faults/, RELIABILITY.md). Inert unless the
 * environment variable LORA_SYNC_FAULTS is set when the process starts: `faultPoint` then returns at
 * once and `faultClock` is undefined. When it is set, its rules (separated by ';') apply:
 *
 *   kill@N          SIGKILL this process at the N-th fault point it reaches (1-based), after writing
 *                   `lora-sync fault: kill N POINT FILE` to stderr, so a test can kill a sync at an
 *                   exact step instead of after a guessed delay.
 *   kill@POINT      the same, the first time it reaches the point named POINT.
 *   int@POINT~TEXT  send this process SIGINT, as a Ctrl-C pressed at that moment, the first time it
 *                   reaches POINT for a file containing TEXT (without `~TEXT`: any file), after
 *                   writing `lora-sync fault: int N POINT FILE`: a Ctrl-C at an exact step, where a
 *                   test that pressed it on seeing a trace line raced the process past the step.
 *   CODE@POINT~TEXT throw an errno error CODE (ENOSPC, EROFS, EACCES, EIO...) at POINT when the file
 *                   concerned contains TEXT (without `~TEXT`: every file), the way the system call
 *                   there would fail.
 *   trace           write `lora-sync fault: point N POINT FILE` to stderr at every point (how many
 *                   points a run has, to spread kills over it).
 *   clock@ISO       the time a sync stamps into copies and the history, so that two runs write
 *                   byte-identical files.
 *
 * Points: write:create (before the temporary file exists), write:open (it exists, empty),
 * write:data (written, not flushed), write:synced (flushed and closed, before the last check),
 * write:renamed (renamed over the target, folder not flushed), write:done (io/atomicWrite);
 * history:write (before appending), history:written (appended, not flushed) (engine/history).
 */
import { writeSync } from 'node:fs';

/** A point, and text the file concerned must contain (undefined: any file). */
type At = { point: string; text?: string };
type FailRule = At & { code: string };

const spec = process.env.LORA_SYNC_FAULTS;
let killAt = 0;
let killAtPoint: string | undefined;
let clock: Date | undefined;
let trace = false;
let intAt: At | undefined;
const fails: FailRule[] = [];
if (spec) {
  for (const rule of spec
    .split(';')
    .map((r) => r.trim())
    .filter(Boolean)) {
    const [what, rest = ''] = rule.split(/@(.*)/s);
    const [point, text] = rest.split(/~(.*)/s);
    if (what === 'kill' && /^\d+$/.test(rest)) killAt = Number(rest);
    else if (what === 'kill') killAtPoint = rest;
    else if (what === 'clock') clock = new Date(rest);
    else if (what === 'int') intAt = { point, text };
    else if (what === 'trace') trace = true;
    else fails.push({ code: what, point, text });
  }
}

let reached = 0;

/** A named step of a write; see the header. Does nothing unless LORA_SYNC_FAULTS is set. */
export function faultPoint(point: string, file: string): void {
  if (!spec) return;
  reached++;
  if (trace) writeSync(2, `lora-sync fault: point ${reached} ${point} ${file}\n`);
  if (reached === killAt || point === killAtPoint) {
    writeSync(2, `lora-sync fault: kill ${reached} ${point} ${file}\n`);
    process.kill(process.pid, 'SIGKILL');
  }
  const at = (r: At) => r.point === point && (r.text === undefined || file.includes(r.text));
  if (intAt && at(intAt)) {
    intAt = undefined; // once
    writeSync(2, `lora-sync fault: int ${reached} ${point} ${file}\n`);
    process.kill(process.pid, 'SIGINT');
  }
  const rule = fails.find(at);
  if (rule) {
    throw Object.assign(new Error(`${rule.code}: injected fault at ${point}, '${file}'`), {
      code: rule.code,
      syscall: point,
      path: file,
    });
  }
}

/** The fixed sync clock of `clock@ISO`, else undefined. */
export const faultClock: (() => Date) | undefined = clock ? () => new Date(clock!.getTime()) : undefined;
