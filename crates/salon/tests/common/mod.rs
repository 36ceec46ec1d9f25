//! Starts a real `salon serve` process on ephemeral ports with a throw-away data directory,
//! for tests that drive it with independent client libraries.

#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub c2s: SocketAddr,
    pub c2s_tls: SocketAddr,
    child: Option<Child>,
}

/// Distinct free ports on 127.0.0.1: all are held open until every one is chosen, because a
/// port closed at once can be handed out again by the next bind (and `salon` refuses two
/// listeners on one port).
pub fn free_ports<const N: usize>() -> [SocketAddr; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local address"))
}

pub fn salon_bin() -> &'static str {
    env!("CARGO_BIN_EXE_salon")
}

impl TestServer {
    /// Start a server; `extra` is appended to the generated TOML.
    pub fn start(extra: &str) -> TestServer {
        TestServer::start_domain("localhost", "", extra)
    }

    /// Start a server for `domain` (its guests on anon.DOMAIN, rooms on rooms.DOMAIN);
    /// `listen` adds lines to `[listen]` (an s2s listener), `extra` is appended to the TOML.
    pub fn start_domain(domain: &str, listen: &str, extra: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let [c2s, c2s_tls, http] = free_ports();
        let config = dir.path().join("salon.toml");
        let mut file = std::fs::File::create(&config).expect("write config");
        write!(
            file,
            r#"domain = "{domain}"
data_dir = "{data}"
[listen]
c2s = "{c2s}"
c2s_direct_tls = "{c2s_tls}"
http = "{http}"
{listen}
[anonymous]
domain = "anon.{domain}"
[muc]
domain = "rooms.{domain}"
{extra}
"#,
            data = dir.path().join("data").display(),
        )
        .expect("write config");
        let log = std::fs::File::create(dir.path().join("server.log")).expect("log file");
        let child = Command::new(salon_bin())
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start salon");
        let server = TestServer {
            dir,
            config,
            c2s,
            c2s_tls,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(c2s).is_err() {
            assert!(
                Instant::now() < deadline,
                "salon did not start:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn add_user(&self, jid: &str, password: &str) {
        let status = Command::new(salon_bin())
            .args(["user", "add", jid, "--password", password, "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .status()
            .expect("run salon user add");
        assert!(status.success(), "salon user add {jid} failed");
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Send SIGTERM and wait; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- salon server log ----\n{}", self.log());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
