/**
 * A problem with how `caracal` was invoked or configured (a missing profile,
 * an unreadable file, conflicting flags). The command prints its message as
 * one line and exits 2, the same as a commander parse error; nothing was
 * sent to the server.
 *
 * @example
 * throw new UsageError("no client secret: set CARACAL_CLIENT_SECRET or pass --client-secret-file <path>");
 */
export class UsageError extends Error {
  override readonly name = "UsageError";
}
