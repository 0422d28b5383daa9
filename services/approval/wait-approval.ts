import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, type HandlerContext } from "@connectrpc/connect";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import type { WaitApprovalRequest, WaitApprovalResponseSchema } from "../../gen/caracal/sts/v1/token_service_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";
import type { DirectoryCache } from "../directory/directory-cache.js";
import type { KeyEncryptionKey } from "../keys/key-encryption-key.js";
import type { Store } from "../store/store.js";
import { zoneSlug } from "../validation.js";
import { approvalStateMessage } from "./approval-message.js";
import { findApproval, stateOf, type ApprovalStateName } from "./approval-rows.js";

/** What `WaitApproval` needs. */
export interface WaitApprovalDeps {
  readonly store: Store;
  readonly kek: KeyEncryptionKey;
  readonly directory: DirectoryCache;
  readonly now: () => number;
  /** Aborted when the server drains. */
  readonly draining: AbortSignal;
  /** How often the approval is looked at; default 250 ms. */
  readonly pollMs?: number;
}

const SETTLED: ReadonlySet<ApprovalStateName> = new Set(["approved", "rejected", "expired", "used"]);

/**
 * `TokenService.WaitApproval`: the agent's way to learn of a decision without
 * busy-polling. Needs the challenge id and secret (so only the agent that was
 * given the challenge can watch it); sends the current state at once, then
 * each change, and ends once the approval is decided or lapses.
 */
export async function* waitApproval(
  deps: WaitApprovalDeps,
  request: WaitApprovalRequest,
  ctx: HandlerContext,
): AsyncGenerator<MessageInitShape<typeof WaitApprovalResponseSchema>> {
  const invalid = () => caracalError(Code.PermissionDenied, Reason.APPROVAL_INVALID, "the challenge id or secret is wrong");
  const zone = await deps.directory.zone(zoneSlug(request.zone));
  if (!zone || request.challengeSecret === "" || request.challengeSecret.length > 128) throw invalid();
  const signal = AbortSignal.any([ctx.signal, deps.draining]);
  let last: ApprovalStateName | undefined;
  while (!signal.aborted) {
    const record = await findApproval(deps.store, zone.id, request.challengeId);
    if (!record || !deps.kek.secretMatches(request.challengeSecret, record.secretHash)) throw invalid();
    const state = stateOf(record, deps.now());
    if (state !== last) {
      yield { state: approvalStateMessage(state), expiresAt: timestampFromDate(record.expiresAt) };
      last = state;
    }
    if (SETTLED.has(state)) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, deps.pollMs ?? 250);
      signal.addEventListener("abort", done, { once: true });
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
    });
  }
}
