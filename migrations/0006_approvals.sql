-- Step-up approvals. Raised when policy marks an Exchange as needing a human
-- decision; bound to exactly what was asked (application, session, resources,
-- scopes, policy-set version); decided by an operator; redeemed once with the
-- challenge secret, of which only a keyed hash is kept.
CREATE TABLE approvals (
  approval_id          uuid        PRIMARY KEY,
  zone_id              uuid        NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
  client_id            text        NOT NULL,
  session_id           text        NOT NULL,
  resources            text[]      NOT NULL,
  scopes               text[]      NOT NULL,
  policy_set_version   bigint      NOT NULL,
  determining_policies text[]      NOT NULL,
  step_up_kind         text        NOT NULL,
  state                text        NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'used')),
  -- HMAC of the challenge secret under a key derived from the key-encryption key.
  secret_hash          bytea       NOT NULL,
  created_at           timestamptz NOT NULL,
  expires_at           timestamptz NOT NULL,
  decided_by           text,
  decided_at           timestamptz,
  decision_reason      text CHECK (char_length(decision_reason) <= 500),
  used_at              timestamptz,
  -- Wrong secrets or mismatched redemptions; five put the challenge in a cooldown.
  failed_attempts      integer     NOT NULL DEFAULT 0,
  cooldown_until       timestamptz
);
CREATE INDEX approvals_by_zone ON approvals (zone_id, created_at DESC);
CREATE INDEX approvals_pending ON approvals (zone_id, created_at DESC) WHERE state = 'pending';
