/**
 * Generates a workspace shaped like the seed's: sources in `⭐_AKTIF_EN_IYILER/`, copies in hall
 * folders and per-team folders (emoji and non-ASCII names, one team spelled in NFD), with a chosen
 * number of stale, diverged, drifted, corrupt, unsafe and orphaned copies. Deterministic per seed.
 */
import { mkdir, open, truncate, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as N from '../formats/pickle/nodes';
import type { PyNode } from '../formats/pickle/nodes';
import { writeTorchCheckpoint, torchPrefixFor } from '../formats/torch/ptWriter';
import { atomicWrite } from '../io/atomicWrite';
import { TreeBuilder, prng, randomF32, py, pyFloat } from './loraTree';

export const SOURCE_FOLDER = '⭐_AKTIF_EN_IYILER';
export const HALLS = ['💎_PERFECT_HYBRID_HALL', '🌟_EINSTEIN_HALL', '🏛️_NEWTON_HALL'];
const TEAMS = [
  'Manchester_United',
  'Liverpool',
  'Beşiktaş',
  'Fenerbahçe',
  'Galatasaray',
  'İstanbul_Başakşehir',
  'Bayern_München',
  'Atlético_Madrid',
  'Borussia_Mönchengladbach',
  'Paris_Saint-Germain',
  'Olympique_Lyonnais',
  'Real_Madrid',
  'Internazionale',
  'AC_Milan',
  'Trabzonspor',
  'Göztepe',
  'Sporting_CP',
  'Ajax',
  'Celtic',
  'Club_Brugge',
];
const SPECS = ['🎯_WIN_EXPERTS', '🎯_DRAW_EXPERTS', '🎯_GOAL_EXPERTS'];
const SPEC_KEYS: Record<string, string> = {
  '🎯_WIN_EXPERTS': 'WIN_EXPERT',
  '🎯_DRAW_EXPERTS': 'DRAW_EXPERT',
  '🎯_GOAL_EXPERTS': 'GOAL_EXPERT',
};

export interface SeedOptions {
  loras?: number;
  copies?: number;
  seed?: number;
  /** Rank and width of each LoRA's tensors (4 tensors: two layers × A/B). */
  rank?: number;
  width?: number;
  /** How many copies to spoil in each way (0 for a clean workspace). */
  problems?: Partial<Record<'stale' | 'diverged' | 'drift' | 'corrupt' | 'unsafe' | 'orphan', number>>;
}

export interface SeedFile {
  path: string;
  lora: string;
  role: 'source' | 'copy';
  expect: string;
}
export interface SeedResult {
  root: string;
  files: SeedFile[];
  loras: number;
  copies: number;
  bytes: number;
}

interface LoraSpec {
  id: string;
  name: string;
  generation: number;
  match: number;
}

function hex(rand: () => number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += Math.floor(rand() * 16).toString(16);
  return s;
}

function metadataFor(
  l: LoraSpec,
  rand: () => number,
  match: number,
  copy?: { team: string; spec: string; score: number; matches: number },
): PyNode {
  const fitness = Array.from({ length: 6 }, () => pyFloat(Math.round(rand() * 1000) / 1000));
  const meta: Record<string, unknown> = {
    id: l.id,
    name: l.name,
    generation: l.generation,
    fitness_history: fitness,
    life_energy: pyFloat(1.2),
    temperament: { aggression: pyFloat(0.4), patience: pyFloat(0.7) },
    _tes_scores: { tactical: pyFloat(0.81), emotional: pyFloat(0.66), strategic: pyFloat(0.9) },
    _lazarus_lambda: pyFloat(0.87),
    _langevin_temp: pyFloat(0.015),
    sync_info: {
      last_sync_match: match,
      last_sync_time: `2025-12-04T10:${String(match % 60).padStart(2, '0')}:00`,
      sync_reason: 'LEARNING_UPDATE',
    },
  };
  if (copy) {
    meta.team = copy.team;
    meta.specialization_key = copy.spec;
    meta.score = pyFloat(copy.score);
    meta.match_count = copy.matches;
    meta.exported_at = '2025-12-01T09:00:00';
  }
  return py(meta);
}

async function writeLora(
  path: string,
  _l: LoraSpec,
  seedOfTensors: number,
  meta: PyNode,
  rank: number,
  width: number,
): Promise<number> {
  const b = new TreeBuilder();
  const r = prng(seedOfTensors);
  const params: Array<[PyNode, PyNode]> = [];
  for (let layer = 0; layer < 2; layer++) {
    params.push([N.str(`layers.${layer}.lora_A`), b.tensor('float32', [rank, width], randomF32(r, rank * width))]);
    params.push([N.str(`layers.${layer}.lora_B`), b.tensor('float32', [width, rank], randomF32(r, rank * width))]);
  }
  const root = N.dict([
    [N.str('lora_params'), N.dict(params)],
    [N.str('metadata'), meta],
  ]);
  const storages = new Map([...b.storages].map(([k, data]) => [k, { kind: 'buffer' as const, data }]));
  const { bytes } = await atomicWrite(
    path,
    (fh) => writeTorchCheckpoint(fh, { prefix: torchPrefixFor(path), root, storages }),
    { noSync: true },
  );
  return bytes;
}

/** Copy folders in a stable order: halls first, then team specialisations and head-to-head folders. */
function copyFolders(rand: () => number): string[] {
  const out = [...HALLS];
  for (const t of TEAMS) {
    const team = t === 'Beşiktaş' ? t.normalize('NFD') : t; // the same name as some file systems store it
    for (const s of SPECS) out.push(join(team, s));
    const rival = TEAMS[Math.floor(rand() * TEAMS.length)];
    if (rival !== t) out.push(join(team, `🆚_VS_${rival}`));
  }
  return out;
}

export async function generateSeedWorkspace(root: string, opts: SeedOptions = {}): Promise<SeedResult> {
  const nLoras = opts.loras ?? 120;
  const nCopies = opts.copies ?? 487;
  const rank = opts.rank ?? 8;
  const width = opts.width ?? 64;
  const rand = prng(opts.seed ?? 42);
  const problems = opts.problems ?? { stale: 12, diverged: 3, drift: 4, corrupt: 2, unsafe: 1, orphan: 2 };
  const folders = copyFolders(rand);
  await mkdir(join(root, SOURCE_FOLDER), { recursive: true });
  const loras: LoraSpec[] = Array.from({ length: nLoras }, (_, i) => ({
    id: `lora_${hex(rand, 6)}${i.toString(36)}`,
    name: `LoRA_Gen${1 + (i % 9)}_${hex(rand, 4)}`,
    generation: 1 + (i % 9),
    match: 50,
  }));
  const files: SeedFile[] = [];
  let bytes = 0;
  // Orphans: copies of LoRAs whose source is gone (the last `orphan` LoRAs get no source file).
  const orphanCount = Math.min(problems.orphan ?? 0, nLoras);
  for (let i = 0; i < nLoras - orphanCount; i++) {
    const l = loras[i];
    const path = join(root, SOURCE_FOLDER, `${l.name}.pt`);
    bytes += await writeLora(path, l, 1000 + i, metadataFor(l, prng(i), l.match), rank, width);
    files.push({ path, lora: l.id, role: 'source', expect: 'SOURCE' });
  }
  // Spread copies over LoRAs round robin, each into a distinct folder.
  const plan: Array<{ l: number; folder: string }> = [];
  for (let c = 0; c < nCopies; c++) {
    const l = c % nLoras;
    plan.push({ l, folder: folders[(c * 7 + Math.floor(c / nLoras)) % folders.length] });
  }
  const kinds: Array<[string, number]> = [
    ['stale', problems.stale ?? 0],
    ['diverged', problems.diverged ?? 0],
    ['drift', problems.drift ?? 0],
    ['corrupt', problems.corrupt ?? 0],
    ['unsafe', problems.unsafe ?? 0],
  ];
  const spoil = new Map<number, string>();
  let next = 0;
  for (const [kind, n] of kinds) {
    for (let k = 0; k < n; k++) {
      while (next < plan.length && plan[next].l >= nLoras - orphanCount) next++;
      if (next < plan.length) spoil.set(next++, kind);
    }
  }
  for (let c = 0; c < plan.length; c++) {
    const { l: li, folder } = plan[c];
    const l = loras[li];
    const dir = join(root, folder);
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${l.name}_${hex(rand, 6)}.pt`);
    const team = folder.split('/')[0].normalize('NFC');
    const spec = folder.split('/')[1] ?? folder;
    const copyKeys = {
      team: HALLS.includes(folder) ? 'HALL_OF_FAME' : team,
      spec: SPEC_KEYS[spec] ?? spec,
      score: Math.round(rand() * 100) / 100,
      matches: 40 + Math.floor(rand() * 100),
    };
    const kind = li >= nLoras - orphanCount ? 'orphan' : (spoil.get(c) ?? 'in_sync');
    let tensorSeed = 1000 + li;
    let meta = metadataFor(l, prng(li), l.match, copyKeys);
    let expect = 'IN_SYNC';
    switch (kind) {
      case 'stale': // synced at match 45 with the tensors the source had then
        tensorSeed = 500_000 + li;
        meta = metadataFor(l, prng(li), 45, copyKeys);
        expect = 'STALE';
        break;
      case 'diverged': // someone fine-tuned this copy in place after its last sync
        tensorSeed = 900_000 + c;
        expect = 'DIVERGED';
        break;
      case 'drift': {
        // same tensors, general metadata edited by hand
        const m = metadataFor(l, prng(li), l.match, copyKeys);
        (m as N.PyDict).entries.push([N.str('life_energy_override'), N.float(0.5)]);
        meta = m;
        expect = 'METADATA_DRIFT';
        break;
      }
      case 'unsafe': {
        const m = metadataFor(l, prng(li), l.match, copyKeys);
        const evil: N.PyObject = {
          kind: 'object',
          how: 'reduce',
          callable: N.global('posix', 'system'),
          args: N.tuple([N.str('true')]),
        };
        (m as N.PyDict).entries.push([N.str('hook'), evil]);
        meta = m;
        expect = 'UNSAFE';
        break;
      }
      case 'orphan':
        expect = 'ORPHAN';
        break;
      case 'corrupt':
        expect = 'CORRUPT';
        break;
    }
    bytes += await writeLora(path, l, tensorSeed, meta, rank, width);
    if (kind === 'corrupt') {
      const size = (await stat(path)).size;
      await truncate(path, Math.floor(size / 2));
    }
    files.push({ path, lora: l.id, role: 'copy', expect });
  }
  // A file that is not a LoRA at all, to show it is left alone.
  const notes = await open(join(root, SOURCE_FOLDER, 'README_not_a_lora.pt'), 'w');
  await notes.writeFile('this is a text file with a .pt name\n');
  await notes.close();
  return { root, files, loras: nLoras, copies: plan.length, bytes };
}
