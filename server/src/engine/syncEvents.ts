/**
 * The history events of a sync: one SYNC event per LoRA the sync acted on (or skipped for a reason
 * other than "already in sync"), and a FORCE_OVERWRITE event per copy overwritten with a backup.
 */
import type { HistoryEvent } from './history';
import type { SyncOptions, SyncResult } from './syncExecutor';

export function syncEvents(res: SyncResult, opts: SyncOptions): HistoryEvent[] {
  const time = (opts.now ?? (() => new Date()))().toISOString();
  const events: HistoryEvent[] = [];
  for (const l of res.loras) {
    const acted = l.copies.filter((c) => c.outcome === 'synced' || c.outcome === 'failed');
    if (!acted.length && !l.copies.some((c) => c.outcome === 'skipped' && c.reason !== 'already in sync')) continue;
    const failed = l.copies.filter((c) => c.outcome === 'failed');
    const noted = l.copies.filter((c) => c.notes?.length);
    events.push({
      time,
      event: 'SYNC',
      lora_id: l.id,
      name: l.name,
      match_idx: opts.match,
      reason: opts.reason,
      synced_copies: l.copies.filter((c) => c.outcome === 'synced').length,
      failed_copies: failed.length,
      skipped_copies: l.copies.filter((c) => c.outcome === 'skipped' || c.outcome === 'refused').length,
      total_copies: l.copies.length,
      ...(failed.length ? { files: failed.map((f) => f.path) } : {}),
      ...(failed.length || noted.length
        ? {
            details: {
              ...(failed.length ? { failures: Object.fromEntries(failed.map((f) => [f.path, f.reason])) } : {}),
              // What a written copy's user should know: an embedded hash corrected or left out, a record not kept.
              ...(noted.length ? { notes: Object.fromEntries(noted.map((c) => [c.path, c.notes!])) } : {}),
            },
          }
        : {}),
    });
    for (const c of l.copies) {
      // (A backup kept because the write dropped keys only the copy had is in the SYNC event's notes.)
      if (c.backup && c.outcome === 'synced' && c.reason === 'forced')
        events.push({
          time,
          event: 'FORCE_OVERWRITE',
          lora_id: l.id,
          name: l.name,
          reason: opts.reason,
          files: [c.path],
          backup: c.backup,
        });
    }
  }
  return events;
}
