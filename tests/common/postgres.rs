//! A real PostgreSQL server for the real-rotation tests: Debian's `postgresql` server
//! (installed by scripts/test.sh), initialised in a scratch directory and started on a free
//! loopback port, password authentication (SCRAM) on TCP. PostgreSQL refuses to run as
//! root, so under root the server runs as `nobody`. A server that cannot start fails the
//! test with its log; nothing is skipped.
//!
//! Logins are checked with the real client, `psql`, so "the database refuses the old
//! password" is what PostgreSQL says, not what a test double says.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The superuser's password in every test server (a test value, on loopback only).
pub const SUPERUSER_PASSWORD: &str = "pg-superuser-test";

pub struct Postgres {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("postgres").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server not found under /usr/lib/postgresql/*/bin: run scripts/test.sh (it installs Debian's postgresql)"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program` with `args`, as `nobody` when we are root.
fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn chown_nobody(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", "nobody"])
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown nobody {}", path.display());
}

impl Postgres {
    /// Initialises and starts a server; panics with its log if it does not come up.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("rotationd-pg-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, SUPERUSER_PASSWORD).unwrap();
        if root {
            // The scratch dir and the path to it must be reachable by `nobody`.
            use std::os::unix::fs::PermissionsExt;
            let mut p = dir.path().to_path_buf();
            while let Some(parent) = p.parent() {
                if let Ok(meta) = std::fs::metadata(parent) {
                    let mode = meta.permissions().mode();
                    if mode & 0o001 == 0 {
                        let _ = std::fs::set_permissions(
                            parent,
                            std::fs::Permissions::from_mode(mode | 0o001),
                        );
                    }
                }
                p = parent.to_path_buf();
            }
            chown_nobody(dir.path());
        }
        let out = as_server_user(&bin.join("initdb"), root)
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = super::rotationd::free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        if root {
            chown_nobody(&dir.path().join("server.log"));
        }
        let child = as_server_user(&bin.join("postgres"), root)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let mut pg = Postgres { port, child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if pg.login("postgres", SUPERUSER_PASSWORD).is_ok() {
                return pg;
            }
            if let Ok(Some(status)) = pg.child.try_wait() {
                panic!("postgres exited at start ({status}):\n{}", pg.log());
            }
            if Instant::now() > deadline {
                panic!("postgres did not accept logins within 30 s:\n{}", pg.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs `sql` as `user` with `password` through `psql` over TCP: the output, or what
    /// the server said (e.g. `password authentication failed for user "app"`).
    pub fn psql(&self, user: &str, password: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={} user={user} dbname=postgres sslmode=disable connect_timeout=5",
                self.port
            ))
            .args(["-X", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env("PGPASSWORD", password)
            .env_remove("PGSERVICE")
            .output()
            .expect("run psql (Debian's postgresql-client)");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Logs in as `user` and asks who it is.
    pub fn login(&self, user: &str, password: &str) -> Result<String, String> {
        self.psql(user, password, "SELECT current_user")
    }

    /// As the superuser.
    pub fn admin(&self, sql: &str) -> String {
        self.psql("postgres", SUPERUSER_PASSWORD, sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A login role with `password` that owns a table, as an application's user would.
    pub fn create_app_user(&self, user: &str, password: &str) {
        self.admin(&format!(
            "CREATE ROLE {user} WITH LOGIN PASSWORD '{password}'; \
             CREATE TABLE {user}_orders (id int); ALTER TABLE {user}_orders OWNER TO {user}"
        ));
    }

    /// The stored password verifier of `user` (a SCRAM hash, never the password): it
    /// changes exactly when setSecret changes the password.
    pub fn verifier(&self, user: &str) -> String {
        self.admin(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'"
        ))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Under root the child is `runuser`; the server's own pid is in postmaster.pid.
        // SIGKILL is enough for a scratch cluster: its backends exit when it dies.
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            && let Some(pid) = pid.lines().next()
        {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A secret value in the shape AWS's PostgreSQL rotation templates use (written by the
/// test, the customer's side; rotationd never reads it).
pub fn secret_value(pg: &Postgres, user: &str, password: &str, master_arn: Option<&str>) -> String {
    let mut v = serde_json::json!({
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": pg.port,
        "username": user,
        "password": password,
        "dbname": "postgres",
    });
    if let Some(m) = master_arn {
        v["masterarn"] = serde_json::json!(m);
    }
    v.to_string()
}
