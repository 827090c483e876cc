//! The profiling endpoints of the observability example, on a listener of their own:
//!
//! - `GET /debug/pprof/profile?seconds=N` — a CPU profile of the whole process for N seconds
//!   (default 30, at most [`MAX_SECONDS`]), sampled 99 times a second by the `pprof` crate
//!   (SIGPROF, frame-pointer unwinding), as gzipped pprof protobuf like Go's `net/http/pprof`
//!   (`go tool pprof` reads it); `&format=flamegraph` (or `svg`) answers a flame graph SVG.
//! - `GET /debug/pprof/heap` — jemalloc's sampled heap profile (one sample per 512 KiB
//!   allocated on average), as gzipped pprof protobuf (`jemalloc_pprof`).
//!
//! Every request needs `Authorization: Bearer <WECHAT_PPROF_TOKEN>` (compared in constant
//! time); without it, `401`. One CPU profile runs at a time (the profiler is process-wide);
//! another asked for meanwhile gets `429`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::{StatusCode, header};
use pprof::protos::Message as _;
use subtle::ConstantTimeEq;

/// The longest CPU profile one request may ask for.
pub const MAX_SECONDS: u64 = 60;
/// The CPU profile's length when `seconds` is not given (Go's default).
pub const DEFAULT_SECONDS: u64 = 30;
/// The shortest token accepted: a guessable token would open the process's memory layout.
pub const MIN_TOKEN_LEN: usize = 16;
/// Samples per second (a prime, so as not to beat with periodic work; Go uses 100).
const FREQUENCY: i32 = 99;

/// Where and with which token the endpoints listen: `WECHAT_PPROF_ADDR` (default
/// `127.0.0.1:6060`) and `WECHAT_PPROF_TOKEN`. `None` — the listener stays off — when no
/// token is set.
pub fn settings_from_env() -> Result<Option<(SocketAddr, Arc<str>)>, String> {
    let token = match std::env::var("WECHAT_PPROF_TOKEN") {
        Ok(token) if !token.trim().is_empty() => token.trim().to_owned(),
        _ => return Ok(None),
    };
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "WECHAT_PPROF_TOKEN must be at least {MIN_TOKEN_LEN} characters"
        ));
    }
    let addr = std::env::var("WECHAT_PPROF_ADDR").unwrap_or_else(|_| "127.0.0.1:6060".into());
    let addr = addr
        .parse()
        .map_err(|error| format!("WECHAT_PPROF_ADDR: {error}"))?;
    Ok(Some((addr, Arc::from(token))))
}

#[derive(Clone)]
struct Shared {
    token: Arc<str>,
    /// Held while a CPU profile runs.
    cpu: Arc<tokio::sync::Mutex<()>>,
}

/// The endpoints, each behind the bearer token.
pub fn router(token: Arc<str>) -> Router {
    let shared = Shared {
        token,
        cpu: Arc::default(),
    };
    Router::new()
        .route("/debug/pprof/profile", get(profile))
        .route("/debug/pprof/heap", get(heap))
        .layer(middleware::from_fn_with_state(shared.clone(), authorize))
        .with_state(shared)
}

async fn authorize(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "));
    match given {
        Some(given) if bool::from(given.ct_eq(shared.token.as_bytes())) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required (WECHAT_PPROF_TOKEN)\n",
        )
            .into_response(),
    }
}

fn bad_request(text: &'static str) -> Response {
    (StatusCode::BAD_REQUEST, text).into_response()
}

async fn profile(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let seconds = match query.get("seconds").map(|seconds| seconds.parse::<u64>()) {
        None => DEFAULT_SECONDS,
        Some(Ok(seconds @ 1..=MAX_SECONDS)) => seconds,
        Some(_) => return bad_request("seconds: a whole number from 1 to 60\n"),
    };
    let flamegraph = match query.get("format").map(String::as_str) {
        None | Some("pprof" | "proto") => false,
        Some("flamegraph" | "svg") => true,
        Some(_) => return bad_request("format: pprof (the default) or flamegraph\n"),
    };
    let Ok(_running) = shared.cpu.clone().try_lock_owned() else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "a CPU profile is already running; try again when it is done\n",
        )
            .into_response();
    };
    let duration = Duration::from_secs(seconds);
    // The profiler's guard is not Send: it lives on a blocking thread for the duration.
    let profiled = tokio::task::spawn_blocking(move || {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(FREQUENCY)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|error| error.to_string())?;
        std::thread::sleep(duration);
        let report = guard.report().build().map_err(|error| error.to_string())?;
        warn_if_no_stacks(&report);
        if flamegraph {
            if report.data.is_empty() {
                // inferno writes nothing for an empty profile; answer an SVG that says so.
                return Ok(no_samples_svg(seconds));
            }
            let mut svg = Vec::new();
            report
                .flamegraph(&mut svg)
                .map_err(|error| error.to_string())?;
            Ok(svg)
        } else {
            let profile = report.pprof().map_err(|error| error.to_string())?;
            gzip(&profile.encode_to_vec())
        }
    })
    .await;
    match profiled {
        Ok(Ok(body)) if flamegraph => {
            ([(header::CONTENT_TYPE, "image/svg+xml")], body).into_response()
        }
        Ok(Ok(body)) => profile_response(body, "profile"),
        Ok(Err(error)) => {
            tracing::error!(%error, "the CPU profile failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the CPU profile failed\n",
            )
                .into_response()
        }
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the CPU profile failed\n",
        )
            .into_response(),
    }
}

/// A flame graph of nothing: the process was idle for the whole profile.
fn no_samples_svg(seconds: u64) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?><svg version=\"1.1\" width=\"1200\" \
         height=\"60\" xmlns=\"http://www.w3.org/2000/svg\"><text x=\"600\" y=\"30\" \
         text-anchor=\"middle\">No CPU samples in {seconds} s: the process was idle.</text></svg>\n"
    )
    .into_bytes()
}

async fn heap() -> Response {
    let Some(control) = jemalloc_pprof::PROF_CTL.as_ref() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "jemalloc heap profiling is not available in this build\n",
        )
            .into_response();
    };
    let mut control = control.lock().await;
    if !control.activated() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "jemalloc heap profiling is off (malloc_conf prof_active)\n",
        )
            .into_response();
    }
    match control.dump_pprof() {
        // jemalloc_pprof answers the protobuf gzipped already.
        Ok(body) => profile_response(body, "heap"),
        Err(error) => {
            tracing::error!(%error, "the heap profile failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the heap profile failed\n",
            )
                .into_response()
        }
    }
}

/// The unwinder walks frame pointers, starting from the interrupted frame's: in a binary
/// built without them, every sample's stack comes out empty. Said once, at WARN.
fn warn_if_no_stacks(report: &pprof::Report) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let samples = !report.data.is_empty();
    let stacks = report.data.keys().any(|frames| !frames.frames.is_empty());
    if samples && !stacks && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            "CPU samples came without stacks: build with RUSTFLAGS=\"-C force-frame-pointers=yes\" \
             (the profiler walks frame pointers)"
        );
    }
}

fn profile_response(body: Vec<u8>, name: &'static str) -> Response {
    let disposition = format!("attachment; filename=\"{name}.pb.gz\"");
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder
        .write_all(bytes)
        .map_err(|error| error.to_string())?;
    encoder.finish().map_err(|error| error.to_string())
}
