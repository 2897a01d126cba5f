//! Where the database is: `DATABASE_URL`, else the project's own cluster.

/// The project cluster's port unless `TAPEFLOW_PGPORT` says otherwise (see scripts/cluster.sh).
pub const DEFAULT_PORT: u16 = 5433;

/// `DATABASE_URL` if set, else the project-local cluster on `TAPEFLOW_PGPORT` (5433).
pub fn database_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if !url.is_empty() {
            return url;
        }
    }
    let port = std::env::var("TAPEFLOW_PGPORT").ok().and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PORT);
    format!("postgresql://postgres@127.0.0.1:{port}/tapeflow")
}

/// An environment variable parsed as `T`; `None` when unset or empty, an error naming the
/// variable and its value when it does not parse.
pub fn env_parse<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => {
            v.parse::<T>().map(Some).map_err(|e| anyhow::anyhow!("{name}={v:?} is invalid: {e}"))
        }
        _ => Ok(None),
    }
}

/// An environment variable as a string; `None` when unset or empty.
pub fn env_string(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
