/**
 * What both halves of bench/interceptor share: a zone key, a resource
 * mandate for `grpc.health.v1.Health/Check`, and the verifier options of the
 * protected edge (requirement map, in-memory revocation view, an audit sink
 * that takes every event and keeps none).
 */
import type { AuditEventInit, AuditSink } from "../../interceptors/audit-sink.js";
import type { EdgeVerifierOptions } from "../../interceptors/edge-verifier.js";
import { InMemoryRevocationView } from "../../interceptors/revocation-view.js";
import { mintMandate, ZoneKeyring } from "../../test/support/mandates.js";

export const BENCH_ZONE = "bench";
export const BENCH_RESOURCE = "bench-api";
export const BENCH_SCOPE = "bench.read";

/**
 * Takes every event and drops it, counting. The verifier still builds each
 * event and calls `record`; only queueing and shipping are left out, so the
 * bench measures verification, not a bus.
 */
export class DroppingAuditSink implements AuditSink {
  recorded = 0;

  record(_event: AuditEventInit): boolean {
    this.recorded++;
    return true;
  }
}

/** How the output names the audit sink in use. */
export const AUDIT_SINK_NOTE = "audit: DroppingAuditSink (record() builds nothing more, counts, returns true)";

export interface BenchEdgeFixture {
  /** A valid resource mandate for the bench edge, good for an hour. */
  readonly token: string;
  /** Verifier options for the protected edge; `cacheSize` as given. */
  verifierOptions(cacheSize?: number): EdgeVerifierOptions & { readonly audit: DroppingAuditSink };
  /** A fresh valid mandate (new `jti`), for uncached runs. */
  mint(): Promise<string>;
}

export async function createBenchEdgeFixture(): Promise<BenchEdgeFixture> {
  const keyring = new ZoneKeyring();
  const key = await keyring.generate(BENCH_ZONE, "bench-k1");
  const mint = () => {
    const iat = Math.floor(Date.now() / 1000);
    return mintMandate({
      key,
      now: Date.now,
      claims: { aud: [BENCH_RESOURCE], target: [BENCH_RESOURCE], scope: BENCH_SCOPE, exp: iat + 3_600 },
    });
  };
  return {
    token: await mint(),
    mint,
    verifierOptions: (cacheSize) => ({
      keys: keyring.resolve,
      revocations: new InMemoryRevocationView(),
      audit: new DroppingAuditSink(),
      allowedZones: [BENCH_ZONE],
      requirements: { "grpc.health.v1.Health/Check": { resource: BENCH_RESOURCE, scopes: [BENCH_SCOPE] } },
      ...(cacheSize !== undefined && { cacheSize }),
    }),
  };
}
