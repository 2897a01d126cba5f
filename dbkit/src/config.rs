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
