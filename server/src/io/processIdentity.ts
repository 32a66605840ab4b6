/**
 * Is the process that made a lock or a temporary file still running? A pid alone cannot say: once
 * the maker is gone, the kernel may hand its pid to another process, and its leftovers would then
 * look live for as long as that one runs. So makers also record their start time as the kernel
 * counts it (`/proc/<pid>/stat`, field 22: clock ticks since boot, unaffected by clock changes), and a
 * live pid whose start time differs is another process. Where there is no /proc (macOS, Windows),
 * only the pid is checked, as before.
 */
import { readFileSync } from 'node:fs';

/** The start time of a process in clock ticks since boot, or undefined where it cannot be read. */
export function processStartTicks(pid: number): number | undefined {
  if (process.platform !== 'linux' || !(pid > 0)) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The name (field 2) is in parentheses and may hold spaces or ')': count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[22 - 3]);
    return Number.isSafeInteger(ticks) && ticks >= 0 ? ticks : undefined;
  } catch {
    return undefined;
  }
}

let ownStart: number | undefined | null = null;
/** This process's start ticks (read once), or undefined where unknown. */
export function ownStartTicks(): number | undefined {
  if (ownStart === null) ownStart = processStartTicks(process.pid);
  return ownStart;
}

/**
 * Whether the process that recorded `pid` (and, when known, `startTicks`) is still running here.
 * EPERM from `kill(pid, 0)` means it exists under another user. A recorded start time that differs
 * from the live pid's means the pid was reused: the maker is gone.
 */
export function processAlive(pid: number, startTicks?: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (startTicks === undefined || !(startTicks > 0)) return true;
  const now = processStartTicks(pid);
  return now === undefined || now === startTicks;
}
