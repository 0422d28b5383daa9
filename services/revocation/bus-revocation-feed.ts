import type { RevocationFeed } from "../../interceptors/feed-revocation-view.js";
import type { Bus } from "../bus/bus.js";

/**
 * The revocation stream as Caracal's own bus delivers it (NATS JetStream or
 * in-process), shaped for `FeedRevocationView`: the STS and the admin edge use
 * the same view every external verifier uses.
 */
export function busRevocationFeed(bus: Bus): RevocationFeed {
  return {
    async follow(handler) {
      return bus.follow("revocations", (message) => handler(message.seq, message.data));
    },
    lastSequence: () => bus.lastSequence("revocations"),
  };
}
