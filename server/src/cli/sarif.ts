/**
 * `status|verify --format sarif`: SARIF 2.1.0, the format CI code scanning reads. One rule per
 * problem status, with its words and level from the shared status table; one result per problem
 * file, located relative to %SRCROOT% (the workspace root) and related to its LoRA's source. No
 * informationUri or helpUri: nothing here needs an internet host.
 */
import { pathToFileURL } from 'node:url';
import type { FileReport, LoraReport } from '../engine/workspace';
import { factsOf, isProblem, type ReportStatus, sarifLevel, STATUS_FACTS, type Status } from '../protocol/statusTable';

const SCHEMA = 'https://json.schemastore.org/sarif-2.1.0.json';
const SRCROOT = '%SRCROOT%';

const SYNC_WORDS = {
  write: 'A sync writes this copy from its source.',
  force: 'A sync refuses this copy unless forced (`lora-sync sync --force`), which keeps a backup first.',
  never: 'A sync never writes this file: a person must act.',
} as const;

/** Every status that is a problem, in the table's order: the rules, with stable indices. */
export const SARIF_RULE_STATUSES = (Object.keys(STATUS_FACTS) as ReportStatus[]).filter(isProblem);

const pascal = (s: string) =>
  s
    .toLowerCase()
    .split('_')
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join('');

/** A workspace-relative path ('/'-separated, NFC) as a relative URI reference: each segment escaped. */
export const relUri = (path: string) => path.split('/').map(encodeURIComponent).join('/');

export function toSarif(
  root: string,
  version: string,
  files: readonly FileReport[],
  loras: readonly LoraReport[],
): Record<string, unknown> {
  const sourceOf = new Map(loras.map((l) => [l.id, l.source]));
  const rules = SARIF_RULE_STATUSES.map((status) => {
    const f = factsOf(status);
    const level = sarifLevel(status);
    return {
      id: status,
      name: pascal(status),
      shortDescription: { text: `${f.label[0].toUpperCase()}${f.label.slice(1)}` },
      fullDescription: { text: f.explanation },
      help: {
        text: `${f.explanation}. ${SYNC_WORDS[f.sync]}`,
        markdown: `**${f.explanation}.** ${SYNC_WORDS[f.sync]}`,
      },
      defaultConfiguration: { level },
      properties: { tags: ['lora-sync', 'lora'], sync: f.sync },
    };
  });
  const results = files
    .filter((f) => isProblem(f.status))
    .map((f) => {
      const source = f.lora_id ? sourceOf.get(f.lora_id) : undefined;
      const related =
        source && source !== f.path
          ? [
              {
                id: 1,
                message: { text: 'the source this file is compared with' },
                physicalLocation: { artifactLocation: { uri: relUri(source), uriBaseId: SRCROOT } },
              },
            ]
          : undefined;
      return {
        ruleId: f.status,
        ruleIndex: SARIF_RULE_STATUSES.indexOf(f.status as Status),
        level: sarifLevel(f.status),
        message: { text: f.message },
        locations: [{ physicalLocation: { artifactLocation: { uri: relUri(f.path), uriBaseId: SRCROOT } } }],
        ...(related ? { relatedLocations: related } : {}),
        properties: {
          lora_id: f.lora_id,
          issues: f.issues.map((i) => ({ type: i.type, ...(i.param ? { param: i.param } : {}), detail: i.detail })),
        },
      };
    });
  // The root as a folder URI: a trailing slash, so relative URIs resolve inside it.
  const rootUri = pathToFileURL(root).href.replace(/\/?$/, '/');
  return {
    $schema: SCHEMA,
    version: '2.1.0',
    runs: [
      {
        tool: { driver: { name: 'lora-sync', version, semanticVersion: version, rules } },
        originalUriBaseIds: { [SRCROOT]: { uri: rootUri, description: { text: 'the workspace root' } } },
        columnKind: 'utf16CodeUnits',
        results,
      },
    ],
  };
}
