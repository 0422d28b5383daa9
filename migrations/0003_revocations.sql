-- Revocations and their outbox. A revocation and its outbox row are written
-- in one transaction; a relay publishes outbox rows to JetStream (message id =
-- revocation id, so a retried publish is dropped as a duplicate) and marks
-- them published only after the stream acknowledged them.
CREATE TABLE revocations (
  revocation_id  uuid        PRIMARY KEY,
  zone_id        uuid        NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
  target_kind    text        NOT NULL CHECK (target_kind IN ('mandate', 'session', 'application', 'zone')),
  -- The jti, sid or client id; for a zone cut-off, the cut-off as text.
  target_key     text        NOT NULL,
  -- For application and zone targets: mandates issued before this are covered.
  issued_before  timestamptz,
  reason         text        NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
  revoked_by     text        NOT NULL,
  created_at     timestamptz NOT NULL,
  -- Every mandate it could cover has expired by then.
  expires_at     timestamptz NOT NULL
);
CREATE INDEX revocations_by_target ON revocations (zone_id, target_kind, target_key, expires_at);
CREATE INDEX revocations_by_zone ON revocations (zone_id, created_at DESC);

CREATE TABLE revocation_outbox (
  revocation_id  uuid        PRIMARY KEY REFERENCES revocations (revocation_id) ON DELETE CASCADE,
  published_at   timestamptz
);
CREATE INDEX revocation_outbox_pending ON revocation_outbox (revocation_id) WHERE published_at IS NULL;
