import { describe, expect, it } from "vitest";
import { Reason } from "../gen/caracal/errors/v1/error_detail_pb.js";
import type { MandateClaims } from "./mandate-claims.js";
import { covers, InMemoryRevocationView, staleRevocationView, type RevocationEntry, type RevocationTarget, type RevocationView } from "./revocation-view.js";
import { CLAIMS_ISSUED_AT_MS, fixtureClaims } from "../test/support/claims.js";

// 2030-01-01T12:00:00Z; claims below are issued at T0.
const T0 = CLAIMS_ISSUED_AT_MS;
const IAT = T0 / 1000;

const claims = fixtureClaims;

let ids = 0;
function entry(target: RevocationTarget, options: { zone?: string; expiresAtMs?: number } = {}): RevocationEntry {
  ids += 1;
  return { id: `rev-${ids}`, zone: options.zone ?? "acme", target, expiresAtMs: options.expiresAtMs ?? T0 + 3_600_000 };
}

interface CoversCase {
  readonly name: string;
  readonly target: RevocationTarget;
  readonly zone?: string;
  readonly claims?: Partial<MandateClaims>;
  readonly covers: boolean;
}

// Each target kind against the default claims (jti mandate-1, sid sess-1,
// root_sid sess-root, client agent-billing, zone acme, issued at T0).
const coversTable: CoversCase[] = [
  { name: "a mandate revocation covers its jti", target: { kind: "mandate", mandateId: "mandate-1" }, covers: true },
  { name: "a mandate revocation does not cover another jti", target: { kind: "mandate", mandateId: "mandate-2" }, covers: false },
  { name: "a session revocation covers the session (sid)", target: { kind: "session", sessionId: "sess-1" }, covers: true },
  { name: "a session revocation covers what descends from it (root_sid)", target: { kind: "session", sessionId: "sess-root" }, covers: true },
  { name: "a session revocation does not cover another session", target: { kind: "session", sessionId: "sess-2" }, covers: false },
  { name: "a session revocation does not match a jti of the same text", target: { kind: "session", sessionId: "mandate-1" }, covers: false },
  {
    name: "an application cut-off covers mandates issued before it",
    target: { kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 + 1 },
    covers: true,
  },
  {
    name: "an application cut-off does not cover a mandate issued at the cut-off instant",
    target: { kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 },
    covers: false,
  },
  {
    name: "an application cut-off does not cover mandates issued after it",
    target: { kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 - 1_000 },
    covers: false,
  },
  {
    name: "an application cut-off does not cover another application",
    target: { kind: "application", clientId: "agent-payroll", issuedBeforeMs: T0 + 60_000 },
    covers: false,
  },
  { name: "a zone cut-off covers mandates issued before it", target: { kind: "zone", issuedBeforeMs: T0 + 1 }, covers: true },
  { name: "a zone cut-off does not cover a mandate issued at the cut-off instant", target: { kind: "zone", issuedBeforeMs: T0 }, covers: false },
  { name: "a zone cut-off does not cover mandates issued after it", target: { kind: "zone", issuedBeforeMs: T0 - 1_000 }, covers: false },
  { name: "a mandate revocation in another zone never matches", zone: "globex", target: { kind: "mandate", mandateId: "mandate-1" }, covers: false },
  { name: "a session revocation in another zone never matches", zone: "globex", target: { kind: "session", sessionId: "sess-1" }, covers: false },
  {
    name: "an application cut-off in another zone never matches",
    zone: "globex",
    target: { kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 + 60_000 },
    covers: false,
  },
  { name: "a zone cut-off of another zone never matches", zone: "globex", target: { kind: "zone", issuedBeforeMs: T0 + 60_000 }, covers: false },
];

describe("covers", () => {
  for (const row of coversTable) {
    it(row.name, () => {
      expect(covers(entry(row.target, { zone: row.zone }), claims(row.claims))).toBe(row.covers);
    });
  }
});

describe("InMemoryRevocationView", () => {
  const view = (now = () => T0) => new InMemoryRevocationView({ now });

  it("answers isRevoked exactly as covers does for every row of the table", () => {
    for (const row of coversTable) {
      const revocations = view();
      revocations.add(entry(row.target, { zone: row.zone }));
      expect(revocations.isRevoked(claims(row.claims)), row.name).toBe(row.covers);
    }
  });

  it("finds a revocation among many of every kind", () => {
    const revocations = view();
    for (let i = 0; i < 100; i += 1) {
      revocations.add(entry({ kind: "mandate", mandateId: `other-${i}` }));
      revocations.add(entry({ kind: "session", sessionId: `other-${i}` }));
      revocations.add(entry({ kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 - i * 1_000 }));
    }
    expect(revocations.isRevoked(claims())).toBe(false);
    revocations.add(entry({ kind: "mandate", mandateId: "mandate-1" }));
    expect(revocations.isRevoked(claims())).toBe(true);
  });

  it("keeps every application cut-off of an application, not only the last one added", () => {
    const revocations = view();
    revocations.add(entry({ kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 + 60_000 }));
    revocations.add(entry({ kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 - 60_000 }));
    expect(revocations.isRevoked(claims())).toBe(true);
  });

  it("ignores a revocation past its expiry even before it is pruned", () => {
    const clock = { ms: T0 };
    const revocations = view(() => clock.ms);
    revocations.add(entry({ kind: "mandate", mandateId: "mandate-1" }, { expiresAtMs: T0 + 1_000 }));
    expect(revocations.isRevoked(claims())).toBe(true);
    clock.ms = T0 + 1_000;
    expect(revocations.isRevoked(claims())).toBe(false);
  });

  it("tells every listener about each revocation added, until it unsubscribes", () => {
    const revocations = view();
    const seen: string[] = [];
    const unsubscribe = revocations.onRevocation((added) => seen.push(added.id));
    const first = entry({ kind: "mandate", mandateId: "mandate-1" });
    revocations.add(first);
    unsubscribe();
    revocations.add(entry({ kind: "session", sessionId: "sess-1" }));
    expect(seen).toEqual([first.id]);
  });

  it("revokes what a revoked session helped obtain as an actor, and nothing else", () => {
    const view = new InMemoryRevocationView({ now: () => T0 });
    const delegated = claims({ sid: "sess-subject", root_sid: "sess-subject", act: { sub: "helper", client_id: "helper", sid: "sess-actor" } });
    expect(view.isRevoked(delegated)).toBe(false);
    view.add(entry({ kind: "session", sessionId: "sess-actor" }));
    expect(covers(entry({ kind: "session", sessionId: "sess-actor" }), delegated)).toBe(true);
    expect(view.isRevoked(delegated)).toBe(true);
    expect(view.isRevoked(claims({ sid: "sess-subject", root_sid: "sess-subject" }))).toBe(false);
  });

  it("is always fresh", () => {
    const fresh: RevocationView = view();
    expect(() => fresh.assertFresh(T0)).not.toThrow();
  });

  it("prunes only the entries whose mandates have all expired", () => {
    const clock = { ms: T0 };
    const revocations = view(() => clock.ms);
    const soon = T0 + 1_000;
    const later = T0 + 60_000;
    revocations.add(entry({ kind: "mandate", mandateId: "gone" }, { expiresAtMs: soon }));
    revocations.add(entry({ kind: "mandate", mandateId: "mandate-1" }, { expiresAtMs: later }));
    revocations.add(entry({ kind: "session", sessionId: "gone" }, { expiresAtMs: soon }));
    revocations.add(entry({ kind: "session", sessionId: "sess-1" }, { expiresAtMs: later }));
    revocations.add(entry({ kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 + 1 }, { expiresAtMs: soon }));
    revocations.add(entry({ kind: "application", clientId: "agent-billing", issuedBeforeMs: T0 + 1 }, { expiresAtMs: later }));
    revocations.add(entry({ kind: "zone", issuedBeforeMs: T0 + 1 }, { expiresAtMs: soon }));
    revocations.add(entry({ kind: "zone", issuedBeforeMs: T0 + 1 }, { expiresAtMs: later }));
    expect(revocations.size).toBe(8);

    expect(revocations.prune()).toBe(0);
    clock.ms = soon;
    expect(revocations.prune()).toBe(4);
    expect(revocations.size).toBe(4);
    expect(revocations.isRevoked(claims({ jti: "mandate-1", sid: "x", root_sid: "x", client_id: "x", iat: IAT + 10 }))).toBe(true);
    expect(revocations.isRevoked(claims({ jti: "x", sid: "sess-1", root_sid: "x", client_id: "x", iat: IAT + 10 }))).toBe(true);
    expect(revocations.isRevoked(claims({ jti: "x", sid: "x", root_sid: "x" }))).toBe(true);

    clock.ms = later;
    expect(revocations.prune()).toBe(4);
    expect(revocations.size).toBe(0);
  });

  it("stays bounded: repeated revocations of one mandate or session hold one entry, and pruning empties the view", () => {
    const clock = { ms: T0 };
    const revocations = view(() => clock.ms);
    for (let i = 0; i < 1_000; i += 1) {
      revocations.add(entry({ kind: "mandate", mandateId: "mandate-1" }, { expiresAtMs: T0 + 1_000 }));
      revocations.add(entry({ kind: "session", sessionId: "sess-1" }, { expiresAtMs: T0 + 1_000 }));
    }
    expect(revocations.size).toBe(2);
    for (let i = 0; i < 1_000; i += 1) {
      revocations.add(entry({ kind: "mandate", mandateId: `m-${i}` }, { expiresAtMs: T0 + 1_000 + i }));
      revocations.add(entry({ kind: "zone", issuedBeforeMs: T0 }, { expiresAtMs: T0 + 1_000 + i }));
    }
    expect(revocations.size).toBe(2_002);
    clock.ms = T0 + 1_000 + 500;
    expect(revocations.prune()).toBe(2 + 501 + 501);
    expect(revocations.size).toBe(998);
    clock.ms = T0 + 1_000 + 1_000;
    revocations.prune();
    expect(revocations.size).toBe(0);
  });
});

describe("staleRevocationView", () => {
  it("is a REASON_REVOCATION_STALE refusal naming the age and the bound", () => {
    const error = staleRevocationView(12_000, 5_000);
    expect(error.reason).toBe(Reason.REVOCATION_STALE);
    expect(error.message).toContain("12000");
    expect(error.message).toContain("5000");
  });
});
