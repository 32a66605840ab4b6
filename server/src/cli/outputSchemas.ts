/**
 * JSON Schemas of `status --json` and `verify --json`, built from the status table so the statuses
 * they list cannot drift from the engine's. `npm run schemas` writes them to docs/schemas/, and a
 * unit test fails when the published files differ from what this builds, and validates real output.
 *
 * Stable fields are required; objects allow additional properties, because the documentation says
 * fields may be added (a consumer must ignore what it does not know). Issue types are an open set
 * of upper-case words for the same reason; statuses are a closed enum (a new status is a change
 * consumers must see).
 */
import { STATUSES } from '../protocol/statusTable';

const str = { type: 'string' };
const nullableStr = { type: ['string', 'null'] };
const count = { type: 'integer', minimum: 0 };
const status = { enum: [...STATUSES] };
const reportStatus = { enum: [...STATUSES, 'UNRECOGNIZED'] };

const issue = {
  type: 'object',
  description: "One thing wrong with a file (the seed's issue shape).",
  required: ['type', 'file', 'detail'],
  properties: {
    type: {
      type: 'string',
      pattern: '^[A-Z][A-Z0-9_]*$',
      description: 'PARAM_MISMATCH, SHAPE_MISMATCH, ...: an open set',
    },
    file: str,
    param: str,
    detail: str,
  },
};

export function statusSchema(): Record<string, unknown> {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'lora-sync status --json',
    type: 'object',
    required: ['root', 'stats', 'loras', 'files'],
    properties: {
      root: { ...str, description: 'the workspace folder, absolute' },
      stats: {
        type: 'object',
        required: [
          'total_loras_tracked',
          'total_copies_tracked',
          'total_syncs_performed',
          'average_copies_per_lora',
          'files',
          'unrecognized',
          'by_status',
        ],
        properties: {
          total_loras_tracked: count,
          total_copies_tracked: count,
          total_syncs_performed: count,
          average_copies_per_lora: { type: 'number', minimum: 0 },
          files: count,
          unrecognized: count,
          by_status: {
            type: 'object',
            description: 'every status, 0 included',
            required: [...STATUSES],
            properties: Object.fromEntries(STATUSES.map((s) => [s, count])),
            additionalProperties: false,
          },
        },
      },
      loras: {
        type: 'array',
        items: {
          type: 'object',
          required: ['id', 'name', 'source', 'sources', 'problems', 'copies'],
          properties: {
            id: str,
            name: str,
            source: { ...nullableStr, description: 'the source copies are compared with; null if none' },
            sources: { type: 'array', items: str },
            problems: count,
            copies: {
              type: 'array',
              items: { type: 'object', required: ['path', 'status'], properties: { path: str, status } },
            },
          },
        },
      },
      files: {
        type: 'array',
        description: 'sorted by path',
        items: {
          type: 'object',
          required: ['path', 'role', 'lora_id', 'status', 'message', 'issues'],
          properties: {
            path: { ...str, description: "relative to root, '/'-separated, NFC" },
            role: { enum: ['source', 'copy', null] },
            lora_id: nullableStr,
            status: reportStatus,
            message: str,
            issues: { type: 'array', items: issue },
            // Optional: present for LoRA files once the layouts are wired in (protocol/reports.ts).
            identified_by: { ...str, description: 'how the file was tied to its LoRA (metadata id, name, ...)' },
            layout: { ...str, description: 'seed, peft, kohya, diffusers, state-dict, ...' },
            unit: {
              type: 'object',
              required: ['kind', 'path'],
              properties: { kind: { enum: ['file', 'folder'] }, path: str },
            },
            version: { ...str, description: 'where in its training run the file is: epoch 8, step 500, ...' },
            why: { ...str, description: 'why an UNRECOGNIZED file is no LoRA' },
          },
        },
      },
    },
  };
}

export function verifySchema(): Record<string, unknown> {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'lora-sync verify --json',
    type: 'object',
    required: ['is_consistent', 'issues', 'loras'],
    properties: {
      is_consistent: { type: 'boolean' },
      issues: { type: 'array', items: issue },
      loras: {
        type: 'array',
        items: {
          type: 'object',
          required: ['id', 'name', 'is_consistent', 'issues'],
          properties: {
            id: str,
            name: str,
            is_consistent: { type: 'boolean' },
            issues: { type: 'array', items: issue },
          },
        },
      },
    },
  };
}

/** The published files: docs/schemas/<name>. */
export const OUTPUT_SCHEMAS = {
  'status.schema.json': statusSchema,
  'verify.schema.json': verifySchema,
} as const;
