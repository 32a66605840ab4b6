/** What /proc says about a running process: resident memory, open descriptors, inotify watches. */
import { readdirSync, readFileSync } from 'node:fs';

/** VmRSS in MB, or undefined once the process is gone. */
export function rssMb(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Open file descriptors and, summed over its inotify instances, the watches it holds (the watcher handles). */
export function fdStats(pid: number): { fds: number; inotifyWatches: number } | undefined {
  try {
    const fds = readdirSync(`/proc/${pid}/fd`);
    let inotifyWatches = 0;
    for (const fd of fds) {
      let info: string;
      try {
        info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
      } catch {
        continue; // closed between the listing and the read
      }
      inotifyWatches += (info.match(/^inotify wd:/gm) ?? []).length;
    }
    return { fds: fds.length, inotifyWatches };
  } catch {
    return undefined;
  }
}

export function percentile(xs: number[], p: number): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export const median = (xs: number[]) => percentile(xs, 50);

/** Least-squares slope of (t ms, v) points, in v per hour. */
export function slopePerHour(points: Array<{ t: number; v: number }>): number {
  const n = points.length;
  if (n < 2) return 0;
  const mt = points.reduce((a, p) => a + p.t, 0) / n;
  const mv = points.reduce((a, p) => a + p.v, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.v - mv);
    den += (p.t - mt) ** 2;
  }
  return den ? (num / den) * 3_600_000 : 0;
}
