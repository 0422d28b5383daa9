-- Policy sets: immutable versions per zone, every activation in order (the
-- latest row is the active version), and the STS's own record of the
-- questions it put to policy, kept so a candidate can be replayed against
-- real traffic before it goes live.

CREATE TABLE policy_set_versions (
  zone_id       uuid        NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
  version       bigint      NOT NULL CHECK (version > 0),
  -- SHA-256 (hex) of the canonical source: documents in order, then the schema.
  content_hash  text        NOT NULL,
  -- { "documents": [{ "name", "text" }], "schema": "…" }
  source        jsonb       NOT NULL,
  author        text        NOT NULL,
  message       text        NOT NULL CHECK (char_length(message) <= 1000),
  created_at    timestamptz NOT NULL,
  PRIMARY KEY (zone_id, version)
);

-- A version is immutable: what was simulated and activated is what runs.
CREATE FUNCTION policy_set_versions_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'policy set versions are immutable (zone %, version %)', OLD.zone_id, OLD.version
    USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
CREATE TRIGGER policy_set_versions_no_update BEFORE UPDATE ON policy_set_versions
  FOR EACH ROW EXECUTE FUNCTION policy_set_versions_immutable();

CREATE TABLE policy_activations (
  zone_id           uuid        NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
  -- 1, 2, 3… per zone; two activations racing for the same seq cannot both commit.
  seq               bigint      NOT NULL CHECK (seq > 0),
  version           bigint      NOT NULL,
  -- 0 when no version was active.
  previous_version  bigint      NOT NULL CHECK (previous_version >= 0),
  activated_by      text        NOT NULL,
  reason            text        NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
  activated_at      timestamptz NOT NULL,
  PRIMARY KEY (zone_id, seq),
  FOREIGN KEY (zone_id, version) REFERENCES policy_set_versions (zone_id, version)
);

-- One row per STS decision that reached the policy stage: the questions put
-- to policy (one per resource and scope) exactly as asked, so replaying them
-- needs nothing that may have changed since. Trimmed to the newest rows per zone.
CREATE TABLE policy_decisions (
  zone_id             uuid        NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
  seq                 bigint      GENERATED ALWAYS AS IDENTITY,
  decision_id         uuid        NOT NULL,
  decided_at          timestamptz NOT NULL,
  -- The version that decided; 0 for the default (grants only).
  policy_set_version  bigint      NOT NULL,
  -- [{ "request": AuthorizationRequestInput, "decision": "allow" | "deny" | "step_up_required" }]
  questions           jsonb       NOT NULL,
  PRIMARY KEY (zone_id, seq)
);
