/** Plain-text renderings of server results: the dry-run plan as markdown, the stats as lines. */
import type { PlanResult, StatsResult } from '../../server/src/protocol/messages';

const ACTION_WORDS = {
  write: 'write',
  force: 'FORCE (overwrite, backup first)',
  skip: 'skip',
  refuse: 'refuse',
} as const;

/** One code span, whatever the text holds (paths may contain backticks). */
function code(text: string): string {
  const ticks = '`'.repeat(Math.max(0, ...(text.match(/`+/g) ?? []).map((t) => t.length)) + 1);
  return `${ticks} ${text} ${ticks}`;
}

export function planMarkdown(plan: PlanResult): string {
  const out = [
    '# LoRA Sync: sync plan (dry run)',
    '',
    'Nothing has been written. Run **LoRA Sync: Sync All** or **Sync LoRA...** to carry it out.',
    '',
  ];
  for (const f of plan.folders) {
    if (plan.folders.length > 1) out.push(`## ${f.root}`, '');
    const counts = { write: 0, force: 0, skip: 0, refuse: 0 };
    for (const l of f.plan) for (const c of l.copies) counts[c.action]++;
    out.push(`${counts.write} to write, ${counts.force} forced, ${counts.skip} skipped, ${counts.refuse} refused`, '');
    // LoRAs with something to do or something in the way; the rest are in sync.
    for (const l of f.plan.filter((p) => p.blocked || p.copies.some((c) => c.action !== 'skip'))) {
      out.push(`### ${l.name} (${code(l.id)})`, '', `Source: ${l.source ? code(l.source) : 'none'}`, '');
      if (l.blocked) out.push(`**Blocked:** ${l.blocked}`, '');
      for (const c of l.copies.filter((x) => x.action !== 'skip'))
        out.push(`- **${ACTION_WORDS[c.action]}** ${code(c.path)} (${c.status}): ${c.why}`);
      out.push('');
    }
  }
  return out.join('\n');
}

export function statsLines(stats: StatsResult): string[] {
  return stats.folders.flatMap((f) => {
    const s = f.stats;
    const by = Object.entries(s.by_status)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ');
    const head = `${s.total_loras_tracked} LoRAs, ${s.total_copies_tracked} copies (${s.average_copies_per_lora.toFixed(2)} per LoRA), ${s.total_syncs_performed} syncs performed`;
    return [stats.folders.length > 1 ? `${f.root}: ${head}` : head, `by status: ${by || 'none'}`];
  });
}
