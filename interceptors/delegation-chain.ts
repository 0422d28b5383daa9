import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ActorSchema } from "../gen/caracal/mandate/v1/mandate_pb.js";
import type { ActorClaim } from "./mandate-claims.js";

/** The delegation chain of an `act` claim, outermost first, as protobuf `Actor`s. */
export function actorsOf(act: ActorClaim | undefined): MessageInitShape<typeof ActorSchema>[] {
  const chain: MessageInitShape<typeof ActorSchema>[] = [];
  for (let hop = act; hop; hop = hop.act) chain.push({ clientId: hop.client_id, subject: hop.sub, sessionId: hop.sid });
  return chain;
}
