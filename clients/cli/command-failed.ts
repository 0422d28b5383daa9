/**
 * A command that reached Caracal (or tried to) and was refused or failed.
 * `main` prints `caracal: <message>` as one line and exits 1.
 */
export class CommandFailed extends Error {
  override readonly name = "CommandFailed";
}
