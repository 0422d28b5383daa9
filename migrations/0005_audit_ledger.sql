-- The audit ledger: every event once, in a per-zone hash chain. The event is
-- kept as the protobuf its producer published (`payload`); the other columns
-- are copies of its fields for filtering, checked against the payload by
-- VerifyChain. Zones are kept by slug, not by reference: the record of a zone
-- outlives the zone.
CREATE TABLE audit_events (
  zone          text        NOT NULL,
  -- Position in the zone's chain: 1, 2, 3…
  seq           bigint      NOT NULL CHECK (seq > 0),
  event_id      uuid        NOT NULL,
  time          timestamptz NOT NULL,
  type          smallint    NOT NULL,
  decision      smallint    NOT NULL,
  -- Caller-chosen, so text. The ids Caracal makes are stored as uuid (16 bytes,
  -- not 37); a value that is not a UUID is stored as a UUID-shaped digest of itself.
  request_id    text,
  decision_id   uuid,
  client_id     text,
  session_id    uuid,
  -- NULL when it is the session itself (most rows).
  root_session_id uuid,
  resources     text[],
  -- The mandate issued or presented (its jti): joins an edge decision to its issuance.
  mandate_id    uuid,
  -- The step-up approval involved: joins an issuance to the operator's decision.
  approval_id   uuid,
  -- The AuditEvent as published, or (slim) without the ids the columns hold,
  -- when putting them back restores the published bytes exactly.
  payload       bytea       NOT NULL,
  slim          boolean     NOT NULL,
  -- The previous row's hmac (32 zero bytes for the first row).
  prev_hash     bytea       NOT NULL,
  -- HMAC-SHA256 under the audit key of prev_hash, zone, seq and the published payload.
  hmac          bytea       NOT NULL,
  PRIMARY KEY (zone, seq)
);
-- At-least-once delivery becomes exactly-once rows.
CREATE UNIQUE INDEX audit_events_event_id ON audit_events (event_id);
-- Ascending: new rows land at the right edge and pages fill; scanned backwards for newest first.
CREATE INDEX audit_events_by_time ON audit_events (zone, time, seq);
CREATE INDEX audit_events_by_request ON audit_events (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX audit_events_by_decision ON audit_events (decision_id) WHERE decision_id IS NOT NULL;
CREATE INDEX audit_events_by_mandate ON audit_events (mandate_id) WHERE mandate_id IS NOT NULL;
CREATE INDEX audit_events_by_approval ON audit_events (approval_id) WHERE approval_id IS NOT NULL;

-- Where each zone's chain ends; locked while a batch extends it.
CREATE TABLE audit_chain_heads (
  zone  text   PRIMARY KEY,
  seq   bigint NOT NULL,
  hmac  bytea  NOT NULL
);
