/**
 * Picks the bus from configuration: NATS JetStream when a URL is given
 * (`CARACAL_NATS_URL`), the in-process bus otherwise (the embedded default).
 */
import type { Bus } from "./bus.js";
import { createMemoryBus } from "./memory-bus.js";
import { openNatsBus, type NatsBusOptions } from "./nats-bus.js";

/** Options of {@link openBus}: the NATS options, with the URL optional. */
export type OpenBusOptions = { readonly natsUrl?: string } & Partial<Omit<NatsBusOptions, "url">>;

/**
 * Opens the NATS bus when `natsUrl` is set (and not blank), else creates the
 * in-process bus with the same retention, de-duplication and retry settings.
 *
 * @throws BusUnavailableError when NATS is configured but cannot be used.
 * @example
 * const bus = await openBus({ natsUrl: process.env.CARACAL_NATS_URL, onError: (e, f) => log.error({ err: e, ...f }, "bus") });
 */
export async function openBus(options: OpenBusOptions = {}): Promise<Bus> {
  const { natsUrl, ...rest } = options;
  if (natsUrl !== undefined && natsUrl.trim() !== "") {
    return openNatsBus({ ...rest, url: natsUrl });
  }
  return createMemoryBus({
    revocationsMaxAgeMs: rest.revocationsMaxAgeMs,
    auditMaxAgeMs: rest.auditMaxAgeMs,
    duplicateWindowMs: rest.duplicateWindowMs,
    redeliveryDelayMs: rest.redeliveryDelayMs,
    onError: rest.onError,
  });
}

