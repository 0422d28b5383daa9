import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { ProbeService } from "../../gen/caracal/probe/v1/probe_service_pb.js";
import { verifiedMandateKey } from "../../interceptors/connect/edge-server-interceptor.js";
import { boundedText } from "../validation.js";

/**
 * `caracal.probe.v1.ProbeService`: answers whoever its edge admitted. The
 * checking is all in the edge interceptor in front of it, which is the point:
 * `validate-rollout` sees the deployment's edge path end to end. The decision
 * id travels in the `x-caracal-decision-id` header, as at any edge.
 */
export function createProbeService(): ServiceImpl<typeof ProbeService> {
  const answer = (note: string, ctx: HandlerContext) => {
    const claims = ctx.values.get(verifiedMandateKey);
    return { note: boundedText(note, "note", 256), clientId: claims?.client_id ?? "", zone: claims?.zone ?? "" };
  };
  return {
    probe: (request, ctx) => answer(request.note, ctx),
    probeSensitive: (request, ctx) => answer(request.note, ctx),
  };
}
