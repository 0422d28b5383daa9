-- Everything the STS needs to authenticate an application and decide what it
-- may ask for: signing keys, applications and their credentials, resources,
-- scopes and grants. Every row belongs to one zone, and every key below starts
-- with zone_id, so a query that forgets the zone finds nothing.

ALTER TABLE zones
  -- Longest resource mandate the zone issues.
  ADD COLUMN max_resource_ttl_seconds integer NOT NULL DEFAULT 900 CHECK (max_resource_ttl_seconds > 0),
  -- How many actors a delegation chain may hold.
  ADD COLUMN max_delegation_hops integer NOT NULL DEFAULT 3 CHECK (max_delegation_hops >= 0);

CREATE TABLE zone_keys (
  kid                 text        PRIMARY KEY,
  zone_id             uuid        NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
  algorithm           text        NOT NULL,
  state               text        NOT NULL CHECK (state IN ('next', 'current', 'retiring', 'retired')),
  public_jwk          jsonb       NOT NULL,
  -- AES-256-GCM under the key-encryption key, bound to zone and kid.
  sealed_private_key  bytea       NOT NULL,
  created_at          timestamptz NOT NULL DEFAULT now(),
  activated_at        timestamptz,
  deactivated_at      timestamptz,
  -- A retiring key stays published until every mandate it signed has expired.
  retire_at           timestamptz
);
CREATE UNIQUE INDEX zone_keys_one_current ON zone_keys (zone_id) WHERE state = 'current';
CREATE UNIQUE INDEX zone_keys_one_next ON zone_keys (zone_id) WHERE state = 'next';
CREATE INDEX zone_keys_by_zone ON zone_keys (zone_id);

CREATE TABLE applications (
  zone_id          uuid        NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
  client_id        text        NOT NULL CHECK (client_id ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
  display_name     text        NOT NULL DEFAULT '',
  labels           jsonb       NOT NULL DEFAULT '{}',
  state            text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled')),
  credential_kind  text        NOT NULL CHECK (credential_kind IN ('client_secret', 'private_key_jwt')),
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (zone_id, client_id)
);

CREATE TABLE application_secrets (
  secret_id    uuid        PRIMARY KEY,
  zone_id      uuid        NOT NULL,
  client_id    text        NOT NULL,
  -- HMAC-SHA256 under a key derived from the key-encryption key; never the secret.
  secret_hash  bytea       NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  -- NULL while current; set when rotated out, to the end of the overlap.
  expires_at   timestamptz,
  FOREIGN KEY (zone_id, client_id) REFERENCES applications ON DELETE CASCADE
);
CREATE INDEX application_secrets_by_app ON application_secrets (zone_id, client_id);

CREATE TABLE application_keys (
  zone_id     uuid        NOT NULL,
  client_id   text        NOT NULL,
  kid         text        NOT NULL,
  public_jwk  jsonb       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (zone_id, client_id, kid),
  FOREIGN KEY (zone_id, client_id) REFERENCES applications ON DELETE CASCADE
);

-- RFC 7523 client assertions are single-use: each jti is remembered until the
-- assertion expires.
CREATE TABLE client_assertion_jtis (
  zone_id     uuid        NOT NULL,
  client_id   text        NOT NULL,
  jti         text        NOT NULL,
  expires_at  timestamptz NOT NULL,
  PRIMARY KEY (zone_id, client_id, jti)
);
CREATE INDEX client_assertion_jtis_expiry ON client_assertion_jtis (expires_at);

CREATE TABLE resources (
  zone_id       uuid        NOT NULL REFERENCES zones (id) ON DELETE CASCADE,
  resource_id   text        NOT NULL CHECK (resource_id ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
  display_name  text        NOT NULL DEFAULT '',
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (zone_id, resource_id)
);

CREATE TABLE resource_scopes (
  zone_id      uuid  NOT NULL,
  resource_id  text  NOT NULL,
  name         text  NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9._:-]{0,127}$'),
  description  text  NOT NULL DEFAULT '',
  PRIMARY KEY (zone_id, resource_id, name),
  FOREIGN KEY (zone_id, resource_id) REFERENCES resources ON DELETE CASCADE
);

CREATE TABLE grants (
  grant_id     uuid        PRIMARY KEY,
  zone_id      uuid        NOT NULL,
  client_id    text        NOT NULL,
  resource_id  text        NOT NULL,
  scopes       text[]      NOT NULL CHECK (cardinality(scopes) > 0),
  created_at   timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (zone_id, client_id) REFERENCES applications ON DELETE CASCADE,
  FOREIGN KEY (zone_id, resource_id) REFERENCES resources ON DELETE CASCADE
);
CREATE INDEX grants_by_app ON grants (zone_id, client_id);
