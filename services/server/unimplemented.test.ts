import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { AuditService, ExportRequestSchema, VerifyChainRequestSchema } from "../../gen/caracal/audit/v1/audit_service_pb.js";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { reasonOf } from "../../interceptors/caracal-error.js";
import { withUnimplemented } from "./unimplemented.js";

describe("withUnimplemented", () => {
  // What a server without an audit key serves for AuditService.
  const impl = withUnimplemented(AuditService, {});
  const ctx = {} as HandlerContext;

  it("answers a missing unary method with UNIMPLEMENTED and REASON_NOT_IMPLEMENTED", async () => {
    const error = await Promise.resolve(impl.verifyChain(create(VerifyChainRequestSchema), ctx)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.Unimplemented);
    expect(reasonOf(error)).toBe(Reason.NOT_IMPLEMENTED);
    expect((error as ConnectError).rawMessage).toBe("caracal.audit.v1.AuditService/VerifyChain is not implemented yet");
  });

  it("answers a missing streaming method the same way", async () => {
    const stream = impl.export(create(ExportRequestSchema), ctx) as AsyncIterable<unknown>;
    await expect((async () => { for await (const _ of stream) void _; })()).rejects.toMatchObject({ code: Code.Unimplemented });
  });
});
