-- Dashboard users, their sessions and login attempts (tapeflow-web). Passwords are stored as
-- argon2id PHC strings; a session is known by the SHA-256 of its cookie, never the cookie
-- itself, so a read of this table cannot be replayed as a login.

CREATE TABLE IF NOT EXISTS tapeflow.users (
    name          text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2%'),
    role          text NOT NULL CHECK (role IN ('viewer', 'trader', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled      boolean NOT NULL DEFAULT false
);
COMMENT ON TABLE tapeflow.users IS
    'Dashboard users: viewer reads, trader also starts backtests, edits strategies, uses the kill switch and flatten, admin also manages users.';

CREATE TABLE IF NOT EXISTS tapeflow.web_sessions (
    id_hash    bytea PRIMARY KEY CHECK (length(id_hash) = 32),
    user_name  text NOT NULL REFERENCES tapeflow.users (name) ON DELETE CASCADE ON UPDATE CASCADE,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS web_sessions_user ON tapeflow.web_sessions (user_name);
CREATE INDEX IF NOT EXISTS web_sessions_expires ON tapeflow.web_sessions (expires_at);
COMMENT ON COLUMN tapeflow.web_sessions.id_hash IS 'SHA-256 of the session cookie.';
COMMENT ON COLUMN tapeflow.web_sessions.csrf_token IS 'Sent by the page in X-CSRF-Token on every mutating request.';

-- One row per login attempt, for the rate limits per address and per user name.
CREATE TABLE IF NOT EXISTS tapeflow.login_attempts (
    id        bigserial PRIMARY KEY,
    time      timestamptz NOT NULL DEFAULT now(),
    address   text NOT NULL,
    user_name text NOT NULL,
    success   boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS login_attempts_user ON tapeflow.login_attempts (user_name, time DESC);
CREATE INDEX IF NOT EXISTS login_attempts_address ON tapeflow.login_attempts (address, time DESC);

-- Who started a backtest from the dashboard (NULL for runs started in SQL).
ALTER TABLE tapeflow.backtest_runs ADD COLUMN IF NOT EXISTS created_by text;
