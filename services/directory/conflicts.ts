import { Code } from "@connectrpc/connect";
import { Reason } from "../../gen/caracal/errors/v1/error_detail_pb.js";
import { caracalError } from "../../interceptors/caracal-error.js";
import { StoreQueryError } from "../store/store.js";

const UNIQUE_VIOLATION = "23505";

/**
 * Runs an insert and turns a unique-key violation into ALREADY_EXISTS naming
 * `what`; the insert itself is the check, so two racing creators cannot both win.
 */
export async function alreadyExistsOnConflict<T>(what: string, insert: () => Promise<T>): Promise<T> {
  try {
    return await insert();
  } catch (error) {
    if (StoreQueryError.from(error)?.code === UNIQUE_VIOLATION) {
      throw caracalError(Code.AlreadyExists, Reason.ALREADY_EXISTS, `${what} already exists`);
    }
    throw error;
  }
}
