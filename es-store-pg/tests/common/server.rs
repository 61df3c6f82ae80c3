//! A throwaway PostgreSQL server in a temporary directory: `initdb`, `pg_ctl start` on a
//! free port of 127.0.0.1, and a watchdog that stops the server and removes the directory
//! once the process that started it has ended. As root, the server runs as the `postgres`
//! user (`initdb` refuses root).
//!
//! Shared by the es-store-pg tests and the PostgreSQL benchmark (`bench/pg_stores.rs`
//! includes this file), so that the crate's public API carries no test scaffolding. It
//! needs only std, `postgres` and `uuid`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The directory of `initdb` and `pg_ctl`: on the `PATH`, or the newest of Debian's
/// `/usr/lib/postgresql/<version>/bin`.
fn bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A command that runs `program` as the `postgres` user when this process is root
/// (`initdb` refuses to run as root).
fn as_server_user(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// A throwaway server this process started.
pub struct Server {
    pub url: String,
    bin: PathBuf,
    dir: PathBuf,
    root: bool,
}

impl Server {
    /// Starts a server in a temporary directory, and a watchdog that stops it and removes
    /// the directory once this process has ended.
    pub fn start() -> Result<Server, String> {
        Self::start_with(&[])
    }

    /// [`Server::start`] with extra server settings (`name=value`, as for `postgres -c`).
    pub fn start_with(settings: &[&str]) -> Result<Server, String> {
        let bin = bin_dir().ok_or("PostgreSQL is not installed (no initdb found)")?;
        let root = is_root();
        let dir =
            std::env::temp_dir().join(format!("es-pg-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if root {
            run(Command::new("chown").arg("postgres:").arg(&dir))?;
        }
        let data = dir.join("data");
        run(as_server_user(root, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]))?;
        watch(root, &bin, &dir)?;
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let mut options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=400 -c shared_buffers=64MB",
                dir.display()
            );
            for setting in settings {
                options.push_str(" -c ");
                options.push_str(setting);
            }
            let server = Server {
                url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
                bin: bin.clone(),
                dir: dir.clone(),
                root,
            };
            match server.pg_ctl(&["-o", &options, "start"]) {
                Ok(()) => {
                    wait_ready(&server.url)?;
                    return Ok(server);
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        run(as_server_user(self.root, &self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60"])
            .args(args))
    }

    /// Stops the server (closing every connection) and starts it again on the same port.
    pub fn restart(&self) -> Result<(), String> {
        self.pg_ctl(&["-m", "fast", "restart"])?;
        wait_ready(&self.url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

/// Starts a detached shell that waits for this process to end, then stops the server and
/// removes its directory.
fn watch(root: bool, bin: &Path, dir: &Path) -> Result<(), String> {
    let pg_ctl = bin.join("pg_ctl");
    let stop = if root {
        format!(
            "runuser -u postgres -- '{}' -D '{}/data' -m immediate stop",
            pg_ctl.display(),
            dir.display()
        )
    } else {
        format!(
            "'{}' -D '{}/data' -m immediate stop",
            pg_ctl.display(),
            dir.display()
        )
    };
    let script = format!(
        "while [ -d /proc/{pid} ]; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the server's watchdog: {e}"))
}

fn wait_ready(url: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match postgres::Client::connect(url, postgres::NoTls) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(format!("server not ready: {e}")),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
