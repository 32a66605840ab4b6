/**
 * Why a copy was not written, in words: the executor's two refusals (a file changed since the plan;
 * a new file that, read back, is not what the plan expected) and the sentence for an I/O error.
 */

/** What the plan judged no longer holds (a file changed, a folder leads elsewhere, a lock cannot be taken): that copy is not written. */
export class ChangedSincePlan extends Error {}

/** The new file, read back before it replaces the copy, is not what the plan expected: it is never installed. */
export class ReadBackMismatch extends Error {}

/** An I/O error as a user reads it: the common causes named, then the system's message. */
export function errText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err?.code) {
    case 'EACCES':
    case 'EPERM':
      return `permission denied: ${err.message}`;
    case 'ENOSPC':
      return `no space left on the device: ${err.message}`;
    case 'EROFS':
      return `read-only file system: ${err.message}`;
    case 'ENOENT':
      return `the file vanished: ${err.message}`;
    case 'EISDIR':
      return `is a directory: ${err.message}`;
    default:
      return err?.message ?? String(e);
  }
}
