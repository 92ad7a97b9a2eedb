//! diarysync as a real process (the binary cargo built for the tests), for what an
//! in-process app cannot show: a SIGKILL at any moment, several nodes on one database.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::helpers::ADMIN_TOKEN;

pub const LIGHTSPEED_TOKEN: &str = "process-lightspeed-token";

/// A running diarysync process on a fixed port; SIGKILLed when dropped.
pub struct Node {
    child: Child,
    pub base: String,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    rust_log: String,
    /// Extra environment (e.g. `FAILPOINTS`), kept for a restart.
    env: Vec<(String, String)>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Node {
    /// Writes a config for `database_url` in `dir` and starts a node on a free port.
    pub async fn start(dir: &Path, database_url: &str, extra: &str) -> Node {
        Node::start_logging(dir, database_url, extra, "warn").await
    }

    /// [`Node::start`] logging at `rust_log` (stdout and stderr go to its log file).
    pub async fn start_logging(
        dir: &Path,
        database_url: &str,
        extra: &str,
        rust_log: &str,
    ) -> Node {
        Node::start_with_env(dir, database_url, extra, rust_log, &[]).await
    }

    /// [`Node::start_logging`] with extra environment variables (`FAILPOINTS` to make the
    /// process stop at a point: fail points are process-wide, so only a process of its own
    /// may have them).
    pub async fn start_with_env(
        dir: &Path,
        database_url: &str,
        extra: &str,
        rust_log: &str,
        env: &[(&str, &str)],
    ) -> Node {
        let port = free_port();
        let config = dir.join(format!("node-{port}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
                 database_url = \"{database_url}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{extra}\n\
                 [[partners]]\nname = \"lightspeed\"\nhandler = \"lightspeed-kseries\"\n\
                 [partners.auth]\nscheme = \"bearer\"\ntoken = \"{LIGHTSPEED_TOKEN}\"\n"
            ),
        )
        .expect("config");
        let log = dir.join(format!("node-{port}.log"));
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Node::spawn(port, config, log, rust_log.to_owned(), env).await
    }

    async fn spawn(
        port: u16,
        config: PathBuf,
        log: PathBuf,
        rust_log: String,
        env: Vec<(String, String)>,
    ) -> Node {
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let errors = output.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_diarysync"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", &rust_log)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(output)
            .stderr(errors)
            .spawn()
            .expect("diarysync starts");
        let node = Node {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
            config,
            log,
            rust_log,
            env,
        };
        node.wait_until_ready().await;
        node
    }

    async fn wait_until_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            let ready = client
                .get(format!("{}/readyz", self.base))
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "diarysync on port {} did not become ready; its log:\n{}",
            self.port,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// SIGKILL: no shutdown, no flush, like a power cut to the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process and starts it again on the same port, config and database.
    pub async fn restart(&mut self) {
        self.kill();
        let config = self.config.clone();
        let log = self.log.clone();
        let env = self.env.clone();
        let next = Node::spawn(self.port, config, log, self.rust_log.clone(), env).await;
        *self = next;
    }
}

impl Node {
    /// SIGTERM, then waits up to `within` for the process to exit; its exit status, or
    /// `None` if it was still running (it is then killed when dropped).
    pub fn terminate_and_wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = std::time::Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
