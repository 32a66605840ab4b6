/**
 * Runs one long server request under a cancellable notification: the server's work-done progress
 * (percent, current file) shows in it, and Cancel reaches the server as `$/cancelRequest`.
 */
import { type CancellationToken, ProgressLocation, window } from 'vscode';
import type { ServerClient } from './serverClient';

export async function withServerProgress<R>(
  server: ServerClient,
  title: string,
  run: (workDoneToken: string, token: CancellationToken) => Promise<R>,
): Promise<R> {
  return window.withProgress(
    { location: ProgressLocation.Notification, title, cancellable: true },
    async (progress, token) => {
      let last = 0;
      const { token: workDoneToken, handle } = server.workDone((v) => {
        if (v.kind === 'end') return;
        // The server reports absolute percentages; the notification wants increments.
        const increment = v.percentage !== undefined ? Math.max(0, v.percentage - last) : undefined;
        if (v.percentage !== undefined) last = Math.max(last, v.percentage);
        progress.report({ message: v.message, increment });
      });
      try {
        return await run(workDoneToken, token);
      } finally {
        handle.dispose();
      }
    },
  );
}

/** A request error as one line for the user. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
