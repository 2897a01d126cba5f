//! A throw-away PostgreSQL cluster of a test's own, for tests that crash or stop the server:
//! the project cluster on port 5433 is shared by every other test running at the same time.
//!
//! It is made like `scripts/cluster.sh` makes the project's (the system's PostgreSQL 15
//! binaries, run as the `postgres` user when the tests run as root, `tapeflow` preloaded for
//! its scheduler, UTC), in a temporary directory on a free port, with one database migrated by
//! `scripts/migrate.sh` on the plain-PostgreSQL path; the scheduler serves that database.
//! Commit timestamps are tracked so a test can tell when each row was committed. The cluster
//! is stopped (`-m immediate`) and its directory removed when the value is dropped; its
//! server log is kept as `target/tapeflow-<label>-<pid>-<n>.log`.

use crate::{free_port, repo_root, TestDb};
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

fn pg_bin() -> PathBuf {
    std::env::var("TAPEFLOW_PGBIN").map(PathBuf::from).unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// A command that runs as the `postgres` user when we are root (PostgreSQL refuses root).
fn as_pg(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("sudo");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn command(program: impl AsRef<std::ffi::OsStr>, args: &[&std::ffi::OsStr]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chown_to_postgres(path: &Path) {
    if is_root() {
        run(command("chown", &["postgres:postgres".as_ref(), path.as_os_str()]), "chown");
    }
}

/// A file in a cluster's directory naming the test process that owns it.
const OWNER: &str = "private-cluster.owner";

/// Stops and removes the clusters of test processes that are gone (killed before they could
/// drop theirs), so that no server outlives its test for long.
fn sweep_abandoned() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for dir in entries.flatten().map(|e| e.path()) {
        let Ok(owner) = std::fs::read_to_string(dir.join(OWNER)) else { continue };
        let alive = owner.trim().parse::<u32>().is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let mut c = as_pg(&pg_bin().join("pg_ctl"));
            c.arg("-D").arg(dir.join("data")).args(["-w", "-m", "immediate", "stop"]);
            let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

pub struct PrivateCluster {
    dir: PathBuf,
    pub port: u16,
    /// The migrated database, which the scheduler serves.
    pub db: String,
}

impl PrivateCluster {
    /// Creates, starts and migrates a cluster; `label` names its directory.
    pub fn start(label: &str) -> PrivateCluster {
        sweep_abandoned();
        let n = CLUSTERS.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("tapeflow-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster directory");
        chown_to_postgres(&dir);
        std::fs::write(dir.join(OWNER), std::process::id().to_string()).expect("write the owner file");
        // Not the names of TestDb's databases, so that nothing aimed at those lands here.
        let db = format!("pc_{label}_{}_{n}", std::process::id());
        let cluster = PrivateCluster { dir, port: free_port(), db };
        let mut initdb = as_pg(&pg_bin().join("initdb"));
        initdb.arg("-D").arg(cluster.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]);
        run(initdb, "initdb");
        let libs =
            if pg_bin().join("../lib/timescaledb.so").exists() { "timescaledb,tapeflow" } else { "tapeflow" };
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
             shared_preload_libraries = '{libs}'\nmax_worker_processes = 16\ntimezone = 'UTC'\n\
             log_timezone = 'UTC'\ntapeflow.scheduler_database = '{db}'\ntrack_commit_timestamp = on\n",
            port = cluster.port,
            db = cluster.db,
        );
        let auto_conf = cluster.data().join("postgresql.auto.conf");
        std::fs::write(&auto_conf, conf).expect("write postgresql.auto.conf");
        // The server rewrites it on ALTER SYSTEM.
        chown_to_postgres(&auto_conf);
        cluster.start_server();
        let admin = format!("postgresql://postgres@127.0.0.1:{}/postgres", cluster.port);
        let create = format!("CREATE DATABASE {}", cluster.db);
        run(
            command("psql", &[admin.as_ref(), "-X".as_ref(), "-q".as_ref(), "-c".as_ref(), create.as_ref()]),
            "CREATE DATABASE",
        );
        let mut migrate =
            command("bash", &[repo_root().join("scripts/migrate.sh").as_os_str(), cluster.url().as_ref()]);
        migrate.env("TAPEFLOW_TIMESCALEDB", "off").stdout(Stdio::null());
        run(migrate, "migrate.sh");
        // The scheduler connects to its database when the server starts: now that it exists.
        cluster.stop_fast();
        cluster.start_server();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log (crash recovery, the scheduler's messages).
    pub fn log(&self) -> PathBuf {
        self.dir.join("postgresql.log")
    }

    /// The database's URL on the cluster's own port.
    pub fn url(&self) -> String {
        self.url_on(self.port)
    }

    /// The database's URL on another port of this host (a proxy in front of the cluster).
    pub fn url_on(&self, port: u16) -> String {
        format!("postgresql://postgres@127.0.0.1:{port}/{}", self.db)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        tapeflow_db::connect(&self.url(), Duration::from_secs(10))
            .await
            .expect("connect to the private cluster")
    }

    /// `pg_ctl start`, waiting until the server accepts connections (after crash recovery).
    pub fn start_server(&self) {
        let mut c = as_pg(&pg_bin().join("pg_ctl"));
        c.arg("-D").arg(self.data()).args(["-w", "-t", "60", "start", "-l"]).arg(self.log());
        run(c, "pg_ctl start");
    }

    fn stop_fast(&self) {
        let mut c = as_pg(&pg_bin().join("pg_ctl"));
        c.arg("-D").arg(self.data()).args(["-w", "-m", "fast", "stop"]);
        run(c, "pg_ctl stop");
    }

    /// `pg_ctl stop -m immediate`: every server process quits at once, as in a crash; what was
    /// not committed is gone and the next start runs crash recovery.
    pub fn stop_immediate(&self) {
        let mut c = as_pg(&pg_bin().join("pg_ctl"));
        c.arg("-D").arg(self.data()).args(["-w", "-m", "immediate", "stop"]);
        run(c, "pg_ctl stop -m immediate");
    }

    /// A [`TestDb`] naming this cluster's database at `url`, for the harness functions that
    /// take one (`start_web`, `add_user`). It is never dropped: TestDb's drop removes a
    /// database from the project cluster, and this one is not there.
    pub fn test_db(&self, url: String) -> ManuallyDrop<TestDb> {
        ManuallyDrop::new(TestDb { name: self.db.clone(), url })
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let mut c = as_pg(&pg_bin().join("pg_ctl"));
        c.arg("-D").arg(self.data()).args(["-w", "-m", "immediate", "stop"]);
        let _ = c.stdout(Stdio::null()).stderr(Stdio::null()).status();
        // The server's log outlives the cluster, beside the daemons' logs.
        let name = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let _ = std::fs::copy(self.log(), repo_root().join(format!("target/{name}.log")));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
