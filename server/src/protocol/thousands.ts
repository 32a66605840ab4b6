/**
 * A whole number with a comma between thousands (`60,571`), as `toLocaleString('en-US')` writes it,
 * without that call's first use loading ICU's number formats: 21–30 ms measured, a share of a command
 * that runs for a second, paid by every `--timings` line. Rounds as Math.round.
 */
export function thousands(n: number): string {
  const r = Math.round(n);
  // Not a finite number below 1e21 (no count or time here): the real thing, whatever it costs.
  if (!(Math.abs(r) < 1e21)) return r.toLocaleString('en-US');
  const digits = String(Math.abs(r));
  let out = digits.slice(0, ((digits.length - 1) % 3) + 1);
  for (let i = out.length; i < digits.length; i += 3) out += `,${digits.slice(i, i + 3)}`;
  return r < 0 || Object.is(r, -0) ? `-${out}` : out;
}
