import { ConnectError } from "@connectrpc/connect";

/** The ConnectError a call was refused with; fails the test when it succeeds. */
export async function refusal(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected a refusal");
}
