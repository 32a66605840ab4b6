/** `lora-sync status|verify|sync|history|stats`: the engine from the command line. */
import { resolve } from 'node:path';
import { stat } from 'node:fs/promises';
import { Workspace, type StatusReport } from '../engine/workspace';
import { planCounts, type PlannedLora } from '../engine/syncPlanner';
import { resolveLora } from '../engine/copyMap';
import { isProblem, type ReportStatus, STATUS_FACTS } from '../protocol/statusTable';
import type { SyncResult } from '../engine/syncExecutor';
import { ConfigError } from '../engine/config';
import { type Painter, painter } from './colour';
import { Progress } from './progress';
import { toSarif } from './sarif';
import { WALKED_LEVELS, writeJson } from './jsonOut';
import type { Timings } from './timings';
import { version } from '../../../package.json';

export class CliUsageError extends Error {}

export interface Common {
  root?: string;
  /** --format, with --json folded in (main.ts). */
  format?: 'text' | 'json' | 'sarif';
  /** Kept for callers of the old shape: the same as format 'json'. */
  json?: boolean;
  /** The progress line on stderr (disabled unless stderr is a terminal and the output is text). */
  progress?: Progress;
  /** Colours for text output (off unless stdout is a terminal, see colour.ts). */
  paint?: Painter;
  /** --timings: each scan's phases are counted here (timings.ts). */
  timings?: Timings;
  /**
   * main.ts's Ctrl-C handler (clear the progress line, print --timings, die): `takeOver` removes it
   * for a command that installs its own (sync, once its copies start); `beforeQuit` does its printing.
   */
  interrupt?: { takeOver(): void; beforeQuit(): void };
}

const fmtOf = (o: Common) => (o.json ? 'json' : (o.format ?? 'text'));
const noProgress = new Progress({ write: () => true }, false);
const plain = painter(false);

/** Scans with the progress line: "listing" until the files are known, then "reading N/M". */
async function scanWithProgress(ws: Workspace, o: Common): Promise<void> {
  const p = o.progress ?? noProgress;
  p.start('listing files');
  let reading = false;
  try {
    const s = await ws.scan({
      onProgress: (done, total) => {
        if (!reading) p.start('reading', total);
        reading = true;
        p.update(done, total);
      },
    });
    o.timings?.scanned(s);
  } finally {
    p.clear();
  }
}

const out = (s: string) => process.stdout.write(`${s}\n`);
/** SARIF's results lie four levels down (the log, `runs`, the run, `results`): walked that deep. */
const SARIF_LEVELS = 4;

/**
 * The exit code, known before a long report is written: a reader that closes the pipe early ends the
 * process with it (main.ts) rather than with SIGPIPE's 141.
 */
function known(code: number): number {
  process.exitCode = code;
  return code;
}

export async function openWorkspace(root: string | undefined): Promise<Workspace> {
  const dir = resolve(root ?? '.');
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new CliUsageError(`${dir}: not a folder`);
  try {
    return await Workspace.open(dir);
  } catch (e) {
    if (e instanceof ConfigError) throw new CliUsageError(e.message);
    throw e;
  }
}

export function formatStatus(r: StatusReport, all: boolean, c: Painter = plain): string {
  const lines: string[] = [];
  const s = r.stats;
  lines.push(
    `${c.paint('bold', r.root)}: ${s.total_loras_tracked} LoRAs, ${s.total_copies_tracked} copies, ${s.files} files (${s.unrecognized} not LoRA checkpoints)`,
  );
  const counts = Object.entries(s.by_status)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => c.status(k as ReportStatus, `${k} ${n}`))
    .join(' · ');
  lines.push(`  ${counts}`);
  const problems = r.files.filter((f) => isProblem(f.status));
  if (!problems.length) lines.push(`  ${c.paint('green', 'every copy is in sync')}`);
  // With no source folder at all, one hint says what to do instead of an orphan line per file.
  const hinted = !all && !!r.hints?.length;
  const listed = (all ? r.files : problems).filter((f) => !(hinted && f.status === 'ORPHAN'));
  for (const f of listed)
    lines.push(
      `  ${c.status(f.status, `${STATUS_FACTS[f.status].cliIcon} ${f.status}`)}${' '.repeat(Math.max(1, 21 - f.status.length))}${f.path}\n      ${f.message}${f.why ? ` (${f.why})` : ''}`,
    );
  if (hinted) {
    const orphans = problems.length - listed.filter((f) => isProblem(f.status)).length;
    if (orphans) lines.push(`  ${orphans} orphan${orphans === 1 ? '' : 's'} not listed (--all lists them)`);
  }
  for (const h of r.hints ?? []) lines.push(`hint: ${h}`);
  return lines.join('\n');
}

export async function cmdStatus(o: Common & { all?: boolean }): Promise<number> {
  const ws = await openWorkspace(o.root);
  await scanWithProgress(ws, o);
  const r = await ws.report();
  const f = fmtOf(o);
  const code = known(r.files.some((f) => isProblem(f.status)) ? 1 : 0);
  if (f === 'sarif') await writeJson(toSarif(r.root, version, r.files, r.loras), process.stdout, SARIF_LEVELS);
  else if (f === 'json') await writeJson(r);
  else out(formatStatus(r, !!o.all, o.paint));
  return code;
}

export async function cmdVerify(o: Common & { lora?: string }): Promise<number> {
  const ws = await openWorkspace(o.root);
  await scanWithProgress(ws, o);
  const ids = o.lora ? [requireLora(ws, o.lora)] : undefined;
  const v = ws.verify(ids);
  await ws.recordVerify(v);
  const f = fmtOf(o);
  const c = o.paint ?? plain;
  known(v.is_consistent ? 0 : 1);
  if (f === 'sarif') {
    // The files of the LoRAs verified, as `status` reports them: one result per problem file.
    const r = await ws.report();
    const verified = new Set(v.loras.map((l) => l.id));
    const files = r.files.filter((x) => x.lora_id !== null && verified.has(x.lora_id));
    await writeJson(toSarif(r.root, version, files, r.loras), process.stdout, SARIF_LEVELS);
  } else if (f === 'json') await writeJson(v);
  else {
    out(
      `${v.is_consistent ? c.paint('green', 'consistent') : c.paint('red', 'NOT consistent')}: ${v.loras.filter((l) => l.is_consistent).length} of ${v.loras.length} LoRAs consistent, ${v.issues.length} issues`,
    );
    for (const l of v.loras.filter((x) => !x.is_consistent)) {
      out(`  ${c.paint('bold', l.name)} (${l.id})`);
      for (const i of l.issues) out(`    ${i.type.padEnd(18)} ${i.file}${i.param ? ` [${i.param}]` : ''}: ${i.detail}`);
    }
  }
  return v.is_consistent ? 0 : 1;
}

/** The LoRA id of --lora (an id or a name), or a usage error. */
function requireLora(ws: Workspace, key: string): string {
  const id = resolveLora(ws.copyMap(), key);
  if (id === undefined) throw new CliUsageError(`no LoRA with id or name '${key}'`);
  return id;
}

export function formatPlan(plan: PlannedLora[]): string {
  const lines: string[] = [];
  const n = planCounts(plan);
  lines.push(`plan: ${n.write} to write, ${n.force} to overwrite by force, ${n.skip} to skip, ${n.refuse} refused`);
  for (const l of plan) {
    const acts = l.copies.filter((c) => c.action !== 'skip');
    if (!acts.length && !l.blocked) continue;
    lines.push(
      `  ${l.name} (${l.id})${l.source ? ` from ${l.source}` : ''}${l.blocked ? ` — BLOCKED: ${l.blocked}` : ''}`,
    );
    for (const c of acts) lines.push(`    ${c.action.padEnd(6)} ${c.path}  (${c.status}: ${c.why})`);
  }
  return lines.join('\n');
}

export function formatSync(r: SyncResult, c: Painter = plain): string {
  const lines = [
    `${r.cancelled ? c.paint('yellow', 'cancelled: ') : ''}${c.paint(r.synced ? 'green' : undefined, `${r.synced} synced`)}, ${c.paint(r.failed ? 'red' : undefined, `${r.failed} failed`)}, ${r.skipped} skipped, ${c.paint(r.refused ? 'yellow' : undefined, `${r.refused} refused`)}`,
  ];
  for (const l of r.loras)
    for (const cp of l.copies)
      if (
        cp.outcome === 'failed' ||
        cp.outcome === 'refused' ||
        (cp.outcome === 'skipped' && cp.reason !== 'already in sync') ||
        // After Ctrl-C, what was written is named too: the user must know where it stopped.
        (r.cancelled && cp.outcome === 'synced')
      )
        lines.push(
          `  ${c.paint(OUTCOME_COLOUR[cp.outcome], cp.outcome.padEnd(8))} ${cp.path}${cp.reason ? `: ${cp.reason}` : ''}`,
        );
  // What a write changed beyond the weights (keys dropped, embedded hashes corrected) is said too.
  for (const l of r.loras)
    for (const cp of l.copies)
      for (const n of cp.notes ?? []) lines.push(`  ${c.paint('yellow', 'note    ')} ${cp.path}: ${n}`);
  if (r.cancelled) {
    const notWritten = r.loras.flatMap((l) => l.copies).filter((x) => x.reason === 'cancelled').length;
    lines.push(`  written before Ctrl-C: ${r.synced}; not written: ${notWritten} (run the sync again to finish)`);
  }
  if (r.historyError) lines.push(`  ${c.paint('yellow', 'warning:')} ${r.historyError}`);
  return lines.join('\n');
}

const OUTCOME_COLOUR = { synced: 'green', failed: 'red', refused: 'yellow', skipped: 'dim' } as const;

export async function cmdSync(
  o: Common & { lora?: string; all?: boolean; reason?: string; match?: string; force?: boolean; dryRun?: boolean },
): Promise<number> {
  if (!o.lora && !o.all) throw new CliUsageError('sync needs --lora ID or --all');
  if (o.lora && o.all) throw new CliUsageError('sync takes --lora ID or --all, not both');
  const match = o.match !== undefined ? Number(o.match) : undefined;
  // Written exactly or not at all: past 2^53 a number is rounded, and a match index is never negative.
  if (match !== undefined && (!/^\s*\d+\s*$/.test(o.match!) || !Number.isSafeInteger(match)))
    throw new CliUsageError(`--match takes a whole number from 0 to ${Number.MAX_SAFE_INTEGER}, not '${o.match}'`);
  const ws = await openWorkspace(o.root);
  await scanWithProgress(ws, o);
  const plan = ws.plan({ loras: o.lora ? [requireLora(ws, o.lora)] : undefined, force: o.force });
  if (o.dryRun) {
    if (o.json) await writeJson({ plan });
    else out(formatPlan(plan));
    return 0;
  }
  const p = o.progress ?? noProgress;
  // First Ctrl-C: stop between copies (the engine finishes the ones in flight, each atomic) and
  // report; a second one quits at once, as git does. A copy being written is then left whole or
  // not at all (temporary file and rename), and the next sync removes the temporary file.
  let cancelled = false;
  const onSig = () => {
    if (cancelled) {
      p.clear();
      process.stderr.write('\nlora-sync: interrupted again, quitting now\n');
      o.interrupt?.beforeQuit();
      process.exit(130);
    }
    cancelled = true;
    p.say('stopping after the copies in flight (Ctrl-C again to quit now)');
    if (!p.enabled) process.stderr.write('lora-sync: stopping after the copies in flight (Ctrl-C again to quit now)\n');
  };
  o.interrupt?.takeOver();
  process.on('SIGINT', onSig);
  let r: SyncResult;
  try {
    const total = plan.reduce(
      (n, l) => n + l.copies.filter((c) => c.action === 'write' || c.action === 'force').length,
      0,
    );
    p.start('syncing', total);
    r = await ws.sync(plan, {
      reason: o.reason ?? (o.all ? 'FULL_SYNC' : 'MANUAL'),
      match,
      cancelled: () => cancelled,
      onProgress: (done, n) => p.update(done, n),
    });
  } finally {
    p.clear();
    // The sync is over: a Ctrl-C while its report is written is no longer "stop after the copies".
    process.off('SIGINT', onSig);
  }
  const code = known(r.failed || r.cancelled || r.historyError ? 1 : 0);
  // plan and result.loras are the long arrays: walked one level deeper than the default.
  if (o.json) await writeJson({ plan, result: r }, process.stdout, WALKED_LEVELS + 1);
  else out(formatSync(r, o.paint));
  return code;
}

export async function cmdHistory(o: Common & { lora?: string; limit?: string }): Promise<number> {
  const ws = await openWorkspace(o.root);
  const limit = o.limit !== undefined ? Number(o.limit) : 50;
  if (!Number.isInteger(limit) || limit < 1) throw new CliUsageError('--limit takes a positive whole number');
  const { events, skippedLines } = await ws.history.read({ limit, loraId: o.lora });
  if (o.json) await writeJson({ events, skipped_lines: skippedLines });
  else {
    if (!events.length) out('no history yet');
    for (const e of events) {
      const counts =
        e.event === 'SYNC'
          ? ` synced ${e.synced_copies}/${e.total_copies}, failed ${e.failed_copies}`
          : e.event === 'VERIFY'
            ? ` ${e.consistent ? 'consistent' : 'inconsistent'}`
            : e.backup
              ? ` backup ${e.backup}`
              : '';
      out(
        `${e.time}  ${e.event.padEnd(15)} ${e.name} (${e.lora_id})${e.match_idx !== undefined ? ` match ${e.match_idx}` : ''}${e.reason ? ` ${e.reason}` : ''}${counts}`,
      );
    }
    if (skippedLines) out(`(${skippedLines} unreadable line(s) skipped)`);
  }
  return 0;
}

export async function cmdStats(o: Common): Promise<number> {
  const ws = await openWorkspace(o.root);
  await scanWithProgress(ws, o);
  const s = await ws.stats();
  if (o.json) await writeJson(s);
  else {
    out(`total_loras_tracked     ${s.total_loras_tracked}`);
    out(`total_copies_tracked    ${s.total_copies_tracked}`);
    out(`total_syncs_performed   ${s.total_syncs_performed}`);
    out(`average_copies_per_lora ${s.average_copies_per_lora}`);
    for (const [k, n] of Object.entries(s.by_status)) if (n) out(`  ${k.padEnd(22)}${n}`);
  }
  return 0;
}

/** `lora-sync watch`: the live loop without VS Code (a training machine), printing status changes. */
export async function cmdWatch(o: Common & { poll?: boolean }): Promise<number> {
  const ws = await openWorkspace(o.root);
  const { LiveIndex } = await import('../engine/liveIndex');
  const time = () => new Date().toISOString().slice(11, 19);
  const live = new LiveIndex(
    ws,
    (e) => {
      if (o.json)
        return out(
          JSON.stringify({
            time: new Date().toISOString(),
            ...e,
            ...(e.kind === 'synced'
              ? {
                  result: {
                    synced: e.result.synced,
                    failed: e.result.failed,
                    skipped: e.result.skipped,
                    refused: e.result.refused,
                  },
                }
              : {}),
          }),
        );
      switch (e.kind) {
        case 'scanned':
          if (e.full)
            out(
              `${time()} watching ${ws.root}: ${e.summary.files} files (${e.summary.read} read, ${e.summary.reused} from the cache)`,
            );
          break;
        case 'statuses':
          for (const c of e.changes)
            out(`${time()} ${(c.before ?? 'new').padEnd(20)} → ${(c.after ?? 'gone').padEnd(20)} ${c.path}`);
          break;
        case 'synced':
          out(
            `${time()} auto-sync (${e.reason}): ${e.result.synced} synced, ${e.result.failed} failed${e.result.failed ? `: ${e.result.loras.flatMap((l) => l.copies.filter((c) => c.outcome === 'failed').map((c) => `${c.path} (${c.reason})`)).join('; ')}` : ''}`,
          );
          break;
        case 'verified':
          out(`${time()} verify: ${e.consistent ? 'consistent' : `${e.issues} issues`}`);
          break;
        case 'watch-error':
          out(
            `${time()} file watching failed (${e.code}): ${e.message}\n         ${e.advice}\n         ${e.polling ? 'polling for changes now, and a' : 'falling back to a'} full reconcile every ${Math.min(ws.cfg.reconcileSeconds || 30, 30)} s`,
          );
          break;
        case 'error':
          out(`${time()} error: ${e.message}`);
          break;
      }
    },
    { usePolling: o.poll },
  );
  await live.start();
  if (!o.json)
    out(
      `${time()} auto-sync: ${ws.cfg.autoSync}${ws.cfg.fullSyncEvery ? `, full sync every ${ws.cfg.fullSyncEvery} source updates` : ''}; Ctrl-C to stop`,
    );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await live.stop();
  return 0;
}
