//! A throw-away Citus cluster of a test's own: a coordinator and two workers made by
//! `scripts/citus.sh` (the way `make citus` makes the project's) under a temporary directory on
//! three free consecutive ports, the database migrated by `scripts/migrate.sh` (which
//! distributes it, sql/020_citus.sql) and the coordinator's announcer running. Stopped and
//! removed when the value is dropped.

use crate::{free_port, repo_root};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn pg_bin() -> PathBuf {
    std::env::var("TAPEFLOW_PGBIN").map(PathBuf::from).unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into())
}

/// Whether Citus is installed into the server's library directory.
pub fn citus_installed() -> bool {
    let out = Command::new(pg_bin().join("pg_config")).arg("--pkglibdir").output();
    match out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("citus.so").exists()
        }
        _ => false,
    }
}

pub struct CitusCluster {
    home: PathBuf,
    /// The coordinator's port; the workers listen on the next two.
    pub port: u16,
    pub db: String,
}

impl CitusCluster {
    /// Starts the three nodes, migrates the coordinator and starts its announcer.
    pub fn start(label: &str) -> CitusCluster {
        let home = std::env::temp_dir().join(format!("tapeflow-citus-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).expect("create the Citus cluster's directory");
        let cluster = CitusCluster { home, port: three_free_ports(), db: format!("citus_{label}") };
        cluster.script(&["start"]);
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/migrate.sh"))
            .arg(cluster.url())
            .env("TAPEFLOW_TIMESCALEDB", "off")
            .stdout(Stdio::null())
            .status()
            .expect("run migrate.sh");
        assert!(status.success(), "migrating the Citus coordinator failed");
        cluster.script(&["announcer"]);
        cluster
    }

    fn script(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/citus.sh"))
            .args(args)
            .env("TAPEFLOW_HOME", &self.home)
            .env("TAPEFLOW_CITUS_PORT", self.port.to_string())
            .env("TAPEFLOW_DB", &self.db)
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/citus.sh");
        assert!(
            out.status.success(),
            "citus.sh {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The coordinator's URL (what feeders and clients use).
    pub fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{}", self.port, self.db)
    }

    /// A worker's URL (`n` = 1 or 2).
    pub fn worker_url(&self, n: u16) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{}", self.port + n, self.db)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        tapeflow_db::connect(&self.url(), Duration::from_secs(10))
            .await
            .expect("connect to the Citus coordinator")
    }

    /// The coordinator's server log.
    pub fn coordinator_log(&self) -> PathBuf {
        self.home.join("citus/logs/coordinator.log")
    }
}

impl Drop for CitusCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/citus.sh"))
            .arg("stop")
            .env("TAPEFLOW_HOME", &self.home)
            .env("TAPEFLOW_CITUS_PORT", self.port.to_string())
            .env("TAPEFLOW_DB", &self.db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// A port p such that p, p + 1 and p + 2 were free a moment ago.
fn three_free_ports() -> u16 {
    for _ in 0..100 {
        let p = free_port();
        if p < 65_000 && (1..=2).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
            return p;
        }
    }
    panic!("no three consecutive free ports");
}
