-- Zones are Caracal's hard boundary: every key, application, resource, grant,
-- session and audit row belongs to exactly one zone.
CREATE TABLE zones (
  id                       uuid        PRIMARY KEY,
  slug                     text        NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9-]{1,63}$'),
  display_name             text        NOT NULL DEFAULT '',
  -- Upper bound on a session mandate's lifetime in this zone.
  max_session_ttl_seconds  integer     NOT NULL DEFAULT 3600 CHECK (max_session_ttl_seconds > 0),
  created_at               timestamptz NOT NULL DEFAULT now()
);
