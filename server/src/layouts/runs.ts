/**
 * Identity of a LoRA across layouts, and training runs that share a name.
 *
 * Two kohya runs with one `ss_output_name` but different `ss_session_id` are two LoRAs: their ids
 * carry the session (`name:pixel_style@1874263015`), so they never mix, and their display names show
 * a run suffix only when two runs of one name are present (`pixel_style (run 2024-05-01 10:00)`).
 * A copy that kept its metadata names its run by its session id; one that lost it (converted,
 * metadata stripped) is told apart by content: its tensors equal one version of exactly one run.
 */
import type { Recognized } from './types';

/** The copy-map id a recognized file gives (before any sync record or content match). */
export function layoutLoraId(r: Recognized): string {
  if (r.id) return r.id;
  return r.session ? `name:${r.name}@${r.session}` : `name:${r.name}`;
}

export interface RunInfo {
  id: string;
  name: string;
  session?: string;
  /** kohya `ss_training_started_at` (seconds), to label the run. */
  startedAt?: number;
}

/** Display names: the plain name when it is unique, else the name with its run. */
export function displayNames(runs: readonly RunInfo[]): Map<string, string> {
  const byName = new Map<string, RunInfo[]>();
  for (const r of runs) {
    const list = byName.get(r.name);
    if (list) list.push(r);
    else byName.set(r.name, [r]);
  }
  const out = new Map<string, string>();
  for (const [name, list] of byName) {
    const ids = new Set(list.map((r) => r.id));
    for (const r of list) out.set(r.id, ids.size > 1 ? `${name} (${runLabel(r, list)})` : name);
  }
  return out;
}

function runLabel(r: RunInfo, siblings: readonly RunInfo[]): string {
  const at = r.startedAt !== undefined ? new Date(r.startedAt * 1000).toISOString().slice(0, 16) : undefined;
  // A start time tells runs apart for people; the session id when two started in the same minute.
  const clash =
    at !== undefined && siblings.some((s) => s.id !== r.id && s.startedAt !== undefined && sameMinute(s, r));
  if (at && !clash) return `run ${at.replace('T', ' ')}`;
  if (r.session) return `run ${r.session.slice(-6)}`;
  return 'no run id';
}

function sameMinute(a: RunInfo, b: RunInfo): boolean {
  return Math.floor(a.startedAt! / 60) === Math.floor(b.startedAt! / 60);
}

/**
 * Which run a copy belongs to among `runs` of its name: by its session id when it has one, else by
 * content (`contentRuns`: the runs one of whose versions has exactly the copy's tensors). Undefined
 * when neither tells (the copy is then ORPHAN with a message naming the candidates).
 */
export function runOfCopy(
  copy: { session?: string },
  runs: readonly RunInfo[],
  contentRuns: readonly string[],
): string | undefined {
  if (copy.session) return runs.find((r) => r.session === copy.session)?.id;
  const hits = new Set(contentRuns.filter((id) => runs.some((r) => r.id === id)));
  return hits.size === 1 ? [...hits][0] : undefined;
}
