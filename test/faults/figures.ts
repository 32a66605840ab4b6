/**
 * The figures RELIABILITY.md keeps (kill points survived, races run, fuzz cases and the slowest,
 * faults injected, files lost, code executed), collected by the fault suites and printed once at the
 * end of the run by a mocha root hook (this file is in .mocharc.faults.json's `require`). With
 * LORA_SYNC_FAULTS_FIGURES=FILE they are also written there as JSON.
 */
import { writeFileSync } from 'node:fs';

type Value = number | string;
const sections = new Map<string, Map<string, Value>>();

function section(name: string): Map<string, Value> {
  let s = sections.get(name);
  if (!s) sections.set(name, (s = new Map()));
  return s;
}

export function setFigure(sec: string, key: string, value: Value): void {
  section(sec).set(key, value);
}

export function addFigure(sec: string, key: string, n = 1): void {
  const s = section(sec);
  s.set(key, (Number(s.get(key)) || 0) + n);
}

export function maxFigure(sec: string, key: string, v: number): void {
  const s = section(sec);
  s.set(key, Math.max(Number(s.get(key)) || 0, v));
}

export const LONG = process.env.LORA_SYNC_FAULTS_LONG === '1';

export const mochaHooks = {
  afterAll(): void {
    if (!sections.size) return;
    const lines = [`\n  figures (${LONG ? 'long mode, LORA_SYNC_FAULTS_LONG=1' : 'CI mode'}):`];
    for (const [name, s] of sections) lines.push(`    ${name}: ${[...s].map(([k, v]) => `${k} ${v}`).join(', ')}`);
    process.stdout.write(`${lines.join('\n')}\n`);
    const out = process.env.LORA_SYNC_FAULTS_FIGURES;
    if (out)
      writeFileSync(
        out,
        `${JSON.stringify({ long: LONG, sections: Object.fromEntries([...sections].map(([k, s]) => [k, Object.fromEntries(s)])) }, null, 2)}\n`,
      );
  },
};
