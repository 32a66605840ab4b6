/**
 * The `loraSync/*` request handlers (protocol/messages.ts). Each answers from the folders' live
 * indexes through the host; results are mapped onto the wire types in ./wire.ts. A handler that
 * throws sends the client a ResponseError; the process carries on.
 */
import { fileURLToPath } from 'node:url';
import {
  type CancellationToken,
  type Connection,
  ErrorCodes,
  type RequestHandler,
  ResponseError,
} from 'vscode-languageserver/node';
import type { RequestType } from 'vscode-languageserver-protocol';
import { resolveLora } from '../engine/copyMap';
import { ConfigError } from '../engine/config';
import { addSourceFolder } from '../engine/sourceFolderEdit';
import { relPath } from '../engine/workspace';
import { cachedFileHashes } from '../engine/fileHashes';
import {
  CopyMapRequest,
  HistoryRequest,
  FileHashesRequest,
  InspectRequest,
  PlanRequest,
  RescanRequest,
  type RescanResult,
  ServerStatusRequest,
  StatsRequest,
  UseFolderAsSourceRequest,
  SyncRequest,
  type SyncSummary,
  VerifyRequest,
  type VerifyResult,
} from '../protocol/messages';
import { type Folder, folderRef, type ServerHost } from './host';
import { InspectError, inspectWorkspaceFile } from './views/inspectModel';
import {
  fileReportToWire,
  historyEventToWire,
  loraReportToWire,
  plannedLoraToWire,
  scanSummaryToWire,
  statsToWire,
  syncedLoraToWire,
  verifyReportToWire,
} from './wire';

const percent = (done: number, total: number) => (total ? Math.min(100, Math.round((done / total) * 100)) : 100);

interface LongWork {
  cancelled: () => boolean;
  report: (done: number, total: number, what?: string) => void;
}

/** `copies` of a plan or sync request: relative paths, compared in NFC like every indexed path. */
function copiesParam(copies: unknown): string[] | undefined {
  if (copies === undefined || copies === null) return undefined;
  if (!Array.isArray(copies) || !copies.every((c) => typeof c === 'string'))
    throw new ResponseError(ErrorCodes.InvalidParams, 'copies must be a list of workspace-relative paths');
  return copies.map((c: string) => c.normalize('NFC'));
}

const noSuchLora = (key: string) => new ResponseError(ErrorCodes.InvalidParams, `no LoRA with id or name '${key}'`);

export function registerRequests(connection: Connection, host: ServerHost): void {
  function handle<P, R>(type: RequestType<P, R, void>, fn: (p: P, token: CancellationToken) => Promise<R>): void {
    const handler = async (p: P, token: CancellationToken): Promise<R> => {
      try {
        return await fn(p, token);
      } catch (e) {
        if (e instanceof ResponseError) throw e;
        connection.console.error(`${type.method}: ${(e as Error).stack ?? e}`);
        throw new ResponseError(ErrorCodes.InternalError, `${type.method}: ${(e as Error).message}`);
      }
    };
    connection.onRequest(type, handler as unknown as RequestHandler<P, R, void>);
  }

  /**
   * Long work over folders (sync, verify, rescan): the server shows as working, the client gets
   * work-done progress, each folder is visited in turn until the request is cancelled.
   */
  function overFolders(
    list: Folder[],
    token: CancellationToken,
    workDoneToken: string | number | undefined,
    title: string,
    visit: (f: Folder, work: LongWork) => Promise<void>,
  ): Promise<void> {
    return host.working(async () => {
      const reporter = connection.window.attachWorkDoneProgress(workDoneToken);
      reporter.begin(title, 0, undefined, true);
      const work: LongWork = {
        cancelled: () => token.isCancellationRequested,
        report: (done, total, what) => reporter.report(percent(done, total), what ?? `${done} / ${total} files`),
      };
      try {
        for (const f of list) {
          if (work.cancelled()) break;
          await visit(f, work);
        }
      } finally {
        reporter.done();
      }
    });
  }

  handle(CopyMapRequest, async (p) => ({
    folders: await Promise.all(
      (await host.usable(p)).map(async ({ f, ws }) => {
        const r = await ws.report();
        return {
          ...folderRef(f),
          loras: r.loras.map(loraReportToWire),
          files: r.files.map(fileReportToWire),
          ...(r.hints?.length ? { hint: r.hints[0] } : {}),
        };
      }),
    ),
  }));

  handle(PlanRequest, async (p) => {
    const out = [];
    for (const { f, ws } of await host.usable(p)) {
      const id = p?.lora ? resolveLora(ws.copyMap(), p.lora) : undefined;
      if (p?.lora && !id) continue;
      const plan = ws.plan({ loras: id ? [id] : undefined, force: p?.force, copies: copiesParam(p?.copies) });
      out.push({ ...folderRef(f), plan: plan.map(plannedLoraToWire) });
    }
    if (p?.lora && !out.length) throw noSuchLora(p.lora);
    return { folders: out };
  });

  handle(SyncRequest, async (p, token) => {
    if (host.initOptions.readOnly)
      throw new ResponseError(
        ErrorCodes.InvalidRequest,
        'this workspace is not trusted: LoRA Sync reads and reports but never writes here',
      );
    if (!p || (!p.lora && !p.all))
      throw new ResponseError(ErrorCodes.InvalidParams, 'sync needs a lora (id or name) or all: true');
    if (p.lora && p.all) throw new ResponseError(ErrorCodes.InvalidParams, 'sync takes a lora or all: true, not both');
    if (p.match !== undefined && (!Number.isSafeInteger(p.match) || p.match < 0))
      throw new ResponseError(ErrorCodes.InvalidParams, 'match must be a whole number ≥ 0');
    const copies = copiesParam(p.copies);
    const out: SyncSummary = { synced: 0, failed: 0, skipped: 0, refused: 0, cancelled: false, folders: [] };
    let found = false;
    const list = host.targets(p);
    await overFolders(list, token, p.workDoneToken, 'LoRA Sync: syncing', (f, work) =>
      host
        .exclusive(f, async (ws) => {
          const id = p.lora ? resolveLora(ws.copyMap(), p.lora) : undefined;
          if (p.lora && !id) return;
          found = true;
          const plan = ws.plan({ loras: id ? [id] : undefined, force: p.force, copies });
          const res = await ws.sync(plan, {
            reason: p.reason ?? (p.all ? 'FULL_SYNC' : 'MANUAL'),
            match: p.match,
            cancelled: work.cancelled,
            onProgress: (done, total, path) => work.report(done, total, path),
          });
          await host.publishAll(f);
          out.synced += res.synced;
          out.failed += res.failed;
          out.skipped += res.skipped;
          out.refused += res.refused;
          out.cancelled ||= res.cancelled;
          out.folders.push({
            ...folderRef(f),
            ...(res.historyError ? { historyError: res.historyError } : {}),
            loras: res.loras.map(syncedLoraToWire),
          });
        })
        .catch((e) => {
          // One folder failing (config error) does not stop the others.
          if (list.length === 1) throw e;
          connection.console.error(`${f.root}: sync failed: ${(e as Error).message}`);
        }),
    );
    if (p.lora && !found) throw noSuchLora(p.lora);
    out.cancelled ||= token.isCancellationRequested;
    return out;
  });

  handle(VerifyRequest, async (p, token) => {
    const out: VerifyResult['folders'] = [];
    await overFolders(host.targets(p), token, p?.workDoneToken, 'LoRA Sync: verifying', async (f, work) => {
      if (!f.ws) return;
      out.push(
        await host.exclusive(f, async (ws) => {
          // Verify what is on disk now, not what the index last saw.
          const s = await ws.scan({ cancelled: work.cancelled, onProgress: (done, total) => work.report(done, total) });
          if (s.changes.length)
            host.publishChanged(
              f,
              s.changes.map((c) => c.path),
            );
          const id = p?.lora ? resolveLora(ws.copyMap(), p.lora) : undefined;
          const report = ws.verify(p?.lora ? [id ?? p.lora] : undefined);
          if (!work.cancelled()) await ws.recordVerify(report);
          return { ...folderRef(f), report: verifyReportToWire(report) };
        }),
      );
    });
    return { is_consistent: out.every((r) => r.report.is_consistent), folders: out };
  });

  handle(StatsRequest, async (p) => ({
    folders: await Promise.all(
      (await host.usable(p)).map(async ({ f, ws }) => ({ ...folderRef(f), stats: statsToWire(await ws.stats()) })),
    ),
  }));

  handle(HistoryRequest, async (p) => ({
    folders: await Promise.all(
      (await host.usable(p)).map(async ({ f, ws }) => {
        const lora = p?.lora ? (resolveLora(ws.copyMap(), p.lora) ?? p.lora) : undefined;
        const { events } = await ws.history.read({ limit: p?.limit, loraId: lora });
        return { ...folderRef(f), events: events.map(historyEventToWire) };
      }),
    ),
  }));

  handle(RescanRequest, async (p, token) => {
    const out: RescanResult['folders'] = [];
    await overFolders(host.targets(p), token, p?.workDoneToken, 'LoRA Sync: scanning', async (f, work) => {
      if (!f.ws) return;
      out.push(
        await host.exclusive(f, async (ws) => {
          const summary = await ws.scan({
            cancelled: work.cancelled,
            onProgress: (done, total) => work.report(done, total),
          });
          await host.publishAll(f);
          return { ...folderRef(f), summary: scanSummaryToWire(summary) };
        }),
      );
    });
    return { folders: out };
  });

  // Asked for when a Copy Map row is hovered: LoRA files the index tracks only, remembered per file version.
  handle(FileHashesRequest, async (p) => {
    let abs: string;
    try {
      abs = fileURLToPath(p?.uri ?? '');
    } catch {
      throw new ResponseError(ErrorCodes.InvalidParams, `${p?.uri}: only files on disk (file: URIs)`);
    }
    const f = host.folderOf(abs);
    if (!f) return null;
    await f.ready;
    if (f.ws?.entry(relPath(f.root, abs))?.kind !== 'lora') return null;
    return cachedFileHashes(abs).catch(() => null);
  });

  handle(InspectRequest, async (p, token) => {
    if (!p?.uri || typeof p.uri !== 'string')
      throw new ResponseError(ErrorCodes.InvalidParams, 'inspect needs the uri of a file');
    let abs: string;
    try {
      abs = fileURLToPath(p.uri);
    } catch {
      throw new ResponseError(ErrorCodes.InvalidParams, `${p.uri}: only files on disk (file: URIs) can be inspected`);
    }
    const f = host.folderOf(abs);
    if (!f)
      throw new ResponseError(
        ErrorCodes.InvalidParams,
        `${abs} is not inside an open workspace folder: LoRA Sync inspects the files of the folders it watches`,
      );
    await f.ready;
    const ws = f.ws;
    if (!ws) throw new ResponseError(ErrorCodes.InternalError, f.error ?? `${f.root}: not ready`);
    // Read-only and outside the folder's queue: it reads the index as it is and opens files by
    // handle, which atomic renames never tear, so a long sync does not hold the view back.
    try {
      return {
        ...folderRef(f),
        ...(await inspectWorkspaceFile(ws, abs, {
          unlimited: p.compareAll === true,
          cancelled: () => token.isCancellationRequested,
        })),
      };
    } catch (e) {
      if (e instanceof InspectError) throw new ResponseError(ErrorCodes.InvalidParams, e.message);
      throw e;
    }
  });

  // "LoRA Sync: Use Folder as Source" (Explorer): the folder joins sourceFolders in lora-sync.json, and
  // the folder's index restarts with it (as any edit of that file does).
  handle(UseFolderAsSourceRequest, async (p) => {
    if (host.initOptions.readOnly)
      throw new ResponseError(
        ErrorCodes.InvalidRequest,
        'this workspace is not trusted: LoRA Sync reads and reports but never writes here',
      );
    let abs: string | undefined;
    try {
      abs = p?.uri ? fileURLToPath(p.uri) : p?.path;
    } catch {
      throw new ResponseError(ErrorCodes.InvalidParams, `${p?.uri}: only folders on disk (file: URIs)`);
    }
    if (!abs?.startsWith('/'))
      throw new ResponseError(ErrorCodes.InvalidParams, 'needs the folder: uri or absolute path');
    const f = host.folderOf(abs);
    if (!f) throw new ResponseError(ErrorCodes.InvalidParams, `${abs} is not inside an open workspace folder`);
    const rel = relPath(f.root, abs);
    let added: { value: string; sourceFolders: string[] };
    try {
      added = await addSourceFolder(f.root, rel);
    } catch (e) {
      if (e instanceof ConfigError) throw new ResponseError(ErrorCodes.InvalidParams, e.message);
      throw e;
    }
    await host.working(() => host.restartFolder(f, f.overrides ?? {}));
    return { ...folderRef(f), added: added.value, sourceFolders: added.sourceFolders };
  });

  connection.onRequest(ServerStatusRequest, () => host.serverStatus());
}
