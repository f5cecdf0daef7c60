//! A MariaDB server of our own: its own data dir, port and socket, durable settings.

use crate::process::Proc;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct MariaDb {
    pub port: u16,
    /// The address it listens on (and so the host it runs on).
    pub bind: String,
    pub dir: PathBuf,
    pub user: String,
    pub password: String,
    /// Server options beyond [`server_args`] (TLS), kept for [`MariaDb::restart`].
    extra_args: Vec<String>,
    proc: Option<Proc>,
}

/// Server options for a TLS-only server: its certificate and key, and every TCP client
/// made to use TLS (the unix socket, which the harness uses, counts as secure).
pub fn tls_only_args(cert: &Path, key: &Path) -> Vec<String> {
    vec![
        format!("--ssl-cert={}", cert.display()),
        format!("--ssl-key={}", key.display()),
        "--require-secure-transport=ON".into(),
        "--tls-version=TLSv1.2,TLSv1.3".into(),
    ]
}

/// Overrides [`server_args`]' sizing for tests, which run several servers at once on one
/// disk: InnoDB writes its whole redo log up front, so 1 GiB each filled CI's disk.
/// Test loads are short and light, far from a 256 MiB log's checkpoint limit.
pub fn test_sizing_args() -> Vec<String> {
    vec![
        "--innodb-log-file-size=256M".into(),
        "--innodb-buffer-pool-size=256M".into(),
    ]
}

/// Durable and sized for a 2-core, shared machine. `innodb_flush_log_at_trx_commit=1`
/// is invariant 1 of system.md: a 200 means the commit reached the disk.
pub fn server_args(dir: &Path, port: u16, bind: &str) -> Vec<String> {
    vec![
        "--no-defaults".into(),
        format!("--datadir={}", dir.join("data").display()),
        format!("--socket={}", dir.join("mysqld.sock").display()),
        format!("--pid-file={}", dir.join("mysqld.pid").display()),
        format!("--log-error={}", dir.join("error.log").display()),
        format!("--tmpdir={}", dir.join("tmp").display()),
        format!("--port={port}"),
        format!("--bind-address={bind}"),
        "--user=root".into(),
        "--skip-name-resolve".into(),
        "--innodb-flush-log-at-trx-commit=1".into(),
        // A redo log and background flushing sized for a few thousand commits/s: with the
        // defaults (io_capacity 200) the checkpoint age reaches its limit after a minute of
        // load and InnoDB stalls every commit for a forced flush (p99 of 0.8 s, measured).
        "--innodb-buffer-pool-size=1G".into(),
        "--innodb-log-file-size=1G".into(),
        "--innodb-io-capacity=2000".into(),
        "--innodb-io-capacity-max=8000".into(),
        "--max-connections=1000".into(),
        "--character-set-server=utf8mb4".into(),
    ]
}

impl MariaDb {
    /// Initialises `dir` if needed, starts the server and creates the app user.
    pub fn start(dir: &Path, port: u16, bind: &str, password: &str) -> Result<Self, String> {
        Self::start_with(dir, port, bind, password, Vec::new())
    }

    /// [`MariaDb::start`] with `extra_args` after the usual server options.
    pub fn start_with(
        dir: &Path,
        port: u16,
        bind: &str,
        password: &str,
        extra_args: Vec<String>,
    ) -> Result<Self, String> {
        // Temporary tables in a directory of the server's own: several servers bootstrap at
        // once in `cargo xtask test`, and one fresh-clone run lost a bootstrap's temporary
        // table in the shared /tmp ("Could not remove temporary table '/tmp/#sql-temptable-…'",
        // then "Unknown table 'mysql.tmp_user_sys'").
        std::fs::create_dir_all(dir.join("tmp")).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !dir.join("data/mysql").exists() {
            let status = Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", dir.join("data").display()))
                .arg("--user=root")
                .arg("--skip-test-db")
                // Passed on to the bootstrapping mariadbd.
                .arg(format!("--tmpdir={}", dir.join("tmp").display()))
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(dir.join("install.log")).map_err(|e| e.to_string())?)
                .status()
                .map_err(|e| format!("mariadb-install-db: {e} (is mariadb-server installed?)"))?;
            if !status.success() {
                return Err(format!(
                    "mariadb-install-db failed; see {}",
                    dir.join("install.log").display()
                ));
            }
        }
        let mut command = crate::hosts::command(bind, "mariadbd");
        command.args(server_args(dir, port, bind)).args(&extra_args);
        let proc = Proc::spawn(&format!("mariadb:{port}"), command, &dir.join("stdout.log"))
            .map_err(|e| format!("mariadbd: {e}"))?;
        let mut db = Self {
            port,
            bind: bind.to_owned(),
            dir: dir.to_owned(),
            user: "payrail".into(),
            password: password.into(),
            extra_args,
            proc: Some(proc),
        };
        db.wait_ready(Duration::from_secs(60))?;
        db.root_sql(&format!(
            "CREATE USER IF NOT EXISTS 'payrail'@'%' IDENTIFIED BY '{password}'; \
             ALTER USER 'payrail'@'%' IDENTIFIED BY '{password}'; \
             GRANT ALL PRIVILEGES ON *.* TO 'payrail'@'%'; FLUSH PRIVILEGES;"
        ))?;
        Ok(db)
    }

    /// Attaches to a server started earlier (by `cargo xtask up`).
    pub fn attach(dir: &Path, port: u16, password: &str) -> Self {
        Self {
            port,
            bind: "127.0.0.1".into(),
            dir: dir.to_owned(),
            user: "payrail".into(),
            password: password.into(),
            extra_args: Vec::new(),
            proc: None,
        }
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let ok = crate::wait_until(timeout, || self.root_sql("SELECT 1").is_ok());
        if ok {
            Ok(())
        } else {
            Err(format!(
                "mariadb on port {} did not start; see {}",
                self.port,
                self.dir.join("error.log").display()
            ))
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// Runs SQL as root over the socket; rows as tab-split strings.
    pub fn root_sql(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        run_client(
            Command::new("mariadb")
                .arg(format!("--socket={}", self.socket().display()))
                .arg("-uroot"),
            None,
            sql,
        )
    }

    /// Runs SQL in `database`.
    pub fn sql(&self, database: &str, sql: &str) -> Result<Vec<Vec<String>>, String> {
        run_client(
            Command::new("mariadb")
                .arg(format!("--socket={}", self.socket().display()))
                .arg("-uroot"),
            Some(database),
            sql,
        )
    }

    /// One number from a query (`SELECT COUNT(*) …`).
    pub fn count(&self, database: &str, sql: &str) -> i64 {
        self.sql(database, sql)
            .ok()
            .and_then(|rows| {
                rows.first()
                    .and_then(|r| r.first())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(-1)
    }

    /// Starts the server again after a crash, on the same data dir and port.
    pub fn restart(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(self.dir.join("tmp")).map_err(|e| e.to_string())?;
        let mut command = crate::hosts::command(&self.bind, "mariadbd");
        command
            .args(server_args(&self.dir, self.port, &self.bind))
            .args(&self.extra_args);
        self.proc = Some(
            Proc::spawn(
                &format!("mariadb:{}", self.port),
                command,
                &self.dir.join("stdout.log"),
            )
            .map_err(|e| format!("mariadbd: {e}"))?,
        );
        self.wait_ready(Duration::from_secs(60))
    }

    pub fn proc_mut(&mut self) -> Option<&mut Proc> {
        self.proc.as_mut()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    pub fn detach(mut self) -> Option<u32> {
        self.proc.take().map(Proc::detach)
    }
}

fn run_client(
    command: &mut Command,
    database: Option<&str>,
    sql: &str,
) -> Result<Vec<Vec<String>>, String> {
    command.arg("--batch").arg("--skip-column-names");
    if let Some(db) = database {
        command.arg(db);
    }
    let output = command
        .arg("-e")
        .arg(sql)
        .output()
        .map_err(|e| format!("mariadb client: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.split('\t').map(str::to_owned).collect())
        .collect())
}
