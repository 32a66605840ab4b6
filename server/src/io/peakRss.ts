/**
 * This process's peak resident memory, in MB: what `--timings` reports and the benchmarks compare.
 * VmHWM in /proc belongs to this address space alone; getrusage's maxRSS (the fallback off Linux)
 * carries a parent's peak across exec on Linux, so a child of a big parent would report the parent's.
 */
import { readFileSync } from 'node:fs';

export function peakRssMB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // no /proc here
  }
  return process.resourceUsage().maxRSS / 1024;
}
