import { fromBinary, toBinary, type DescMessage, type DescMethod, type DescService, type MessageShape } from "@bufbuild/protobuf";
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";

/**
 * A request that could not be decoded. grpc-js answers a throwing
 * deserializer with INTERNAL; returning this marker instead lets the handler
 * answer INVALID_ARGUMENT, which is what the caller did wrong.
 */
export const UNDECODABLE = Symbol("caracal.undecodable");

/**
 * A grpc-js service definition built from a protobuf-es service descriptor,
 * so one `buf generate` output serves both grpc-js and Connect.
 *
 * @example
 * server.addService(grpcServiceDefinition(BillingService), handlers);
 */
export function grpcServiceDefinition(service: DescService): ServiceDefinition {
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) definition[method.localName] = methodDefinition(service, method);
  return definition;
}

function methodDefinition(service: DescService, method: DescMethod): MethodDefinition<unknown, unknown> {
  return {
    path: `/${service.typeName}/${method.name}`,
    originalName: method.localName,
    requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
    responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
    requestSerialize: serializer(method.input),
    requestDeserialize: deserializer(method.input),
    responseSerialize: serializer(method.output),
    responseDeserialize: deserializer(method.output),
  };
}

function serializer(schema: DescMessage) {
  return (message: unknown) => Buffer.from(toBinary(schema, message as MessageShape<DescMessage>));
}

function deserializer(schema: DescMessage) {
  return (bytes: Buffer): unknown => {
    try {
      return fromBinary(schema, bytes);
    } catch {
      return UNDECODABLE;
    }
  };
}
