//! The quick start's `AccessFormat` and `AccessFields` write the very text tracing-subscriber's
//! default line and field formats write (without colours): the same events and spans through
//! both, line for line.

#[path = "../examples/support/log.rs"]
#[allow(dead_code)]
mod log;

use std::io;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use tracing::subscriber::with_default;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Lines {
        self.clone()
    }
}

#[derive(Debug)]
struct Failure(&'static str, Option<Box<Failure>>);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1.as_deref().map(|source| source as _)
    }
}

/// What `log` writes through `subscriber`.
fn written(
    log: &impl Fn(),
    subscriber: impl FnOnce(Lines) -> Box<dyn tracing::Subscriber + Send + Sync>,
) -> String {
    let lines = Lines::default();
    with_default(subscriber(lines.clone()), log);
    String::from_utf8(lines.0.lock().unwrap().clone()).unwrap()
}

/// tracing-subscriber's `fmt()` without colours, at every level.
fn fmt() -> tracing_subscriber::fmt::SubscriberBuilder {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
}

/// What `log` writes with tracing-subscriber's default line and fields and with the quick
/// start's `AccessFormat` and `AccessFields` (an empty time, no colours).
fn both(log: impl Fn()) -> (String, String) {
    let default = written(&log, |lines| {
        Box::new(fmt().with_timer(()).with_writer(lines).finish())
    });
    let fast = written(&log, |lines| {
        Box::new(
            fmt()
                .fmt_fields(log::AccessFields)
                .event_format(log::AccessFormat::with_timer(()))
                .with_writer(lines)
                .finish(),
        )
    });
    (default, fast)
}

/// The same with the default line format around both field formats (no time at all).
fn fields_only(log: impl Fn()) -> (String, String) {
    let default = written(&log, |lines| {
        Box::new(fmt().without_time().with_writer(lines).finish())
    });
    let fast = written(&log, |lines| {
        Box::new(
            fmt()
                .without_time()
                .fmt_fields(log::AccessFields)
                .with_writer(lines)
                .finish(),
        )
    });
    (default, fast)
}

fn events(text: &str, number: u64) {
    let span = tracing::info_span!(
        "wechat_callback",
        method = %"POST",
        path = %text,
        msg_type = tracing::field::Empty,
        msg_id = tracing::field::Empty,
        openid = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let _entered = span.enter();
    tracing::record_all!(
        span,
        msg_type = text,
        msg_id = Some(number),
        openid = None::<&str>
    );
    span.record("latency_ms", number as f64 / 1000.0);
    tracing::info!(
        msg_type = text,
        msg_id = number,
        status = 200u16,
        latency_ms = 0.25,
        "callback answered"
    );
    tracing::warn!(
        event = text,
        negative = -(number as i64),
        flag = true,
        "{text}"
    );
    tracing::error!(r#type = text, debug = ?text, display = %text, "literal message");
    tracing::info!(text);
    tracing::info!(number, "{number} and {text:?}");
    tracing::debug!(
        error = &Failure("outer", Some(Box::new(Failure("inner", None))))
            as &(dyn std::error::Error + 'static),
        "failed"
    );
    tracing::trace!(message = text, other = text);
    tracing::info!(unsigned = number, missing = None::<u64>);
    tracing::info!(
        message = number,
        min = i64::MIN,
        zero = 0u64,
        max = u64::MAX
    );
    tracing::info!(message = -(number as i64) - 1, flag = false);
    drop(_entered);
    // Outside any span, in a span without fields inside one with, with an explicit parent.
    tracing::info!(latency_ms = number as f64 / 1000.0, message = text);
    let outer = tracing::info_span!("outer", text);
    let inner = outer.in_scope(|| tracing::debug_span!("inner"));
    inner.in_scope(|| tracing::warn!(latency_ms = -0.0, other = f64::NAN, "{number}"));
    tracing::error!(parent: &span, latency_ms = 1e9, small = 1e-7, "{text}");
    tracing::trace!(parent: &outer, latency_ms = 0.1 + 0.2, message = 2.5);
}

#[test]
fn the_access_fields_write_the_default_text() {
    for text in [
        "text",
        "",
        "with space",
        "quote \" and backslash \\",
        "new\nline\ttab\r",
        "esc \x1b[31m red \x07\x08\x0c\x7f",
        "c1 \u{85}\u{9b}",
        "你好，订单",
        "emoji 😀 and \u{200b} zero width",
        "oBen****00",
        "/wechat",
    ] {
        let (default, fast) = fields_only(|| events(text, 17961928790000000));
        assert_eq!(fast, default, "{text:?}");
        let (default, fast) = both(|| events(text, 17961928790000000));
        for part in [
            "wechat_callback{method=POST path=",
            " msg_id=17961928790000000",
            " status=200 latency_ms=0.25",
            " negative=-17961928790000000 flag=true",
            "error=outer error.sources=[inner]",
            "type=",
            " unsigned=17961928790000000",
        ] {
            assert!(default.contains(part), "{part:?} not in {default}");
        }
        assert_eq!(fast, default, "{text:?}");
    }
}

proptest! {
    #[test]
    fn any_text_is_written_the_same(text in any::<String>(), number in any::<u64>()) {
        let (default, fast) = both(|| events(&text, number));
        prop_assert_eq!(fast, default);
    }

    #[test]
    fn any_latency_is_written_as_debug_writes_it(
        micros in 0u64..2_000_000_000_000,
        any in any::<f64>(),
    ) {
        for value in [micros as f64 / 1000.0, any] {
            let mut buffer = [0u8; 24];
            if let Some(text) = log::milli_decimal(&mut buffer, value) {
                prop_assert_eq!(text, format!("{value:?}"));
            }
        }
    }
}

#[test]
fn whole_thousandths_take_the_fast_path_and_others_do_not() {
    let mut buffer = [0u8; 24];
    for (value, text) in [
        (0.0, Some("0.0")),
        (0.007, Some("0.007")),
        (1.5, Some("1.5")),
        (2.0, Some("2.0")),
        (1234.567, Some("1234.567")),
        (999_999_999.999, Some("999999999.999")),
        (1e9, None),
        (-0.0, None),
        (-1.0, None),
        (0.0001, None),
        (0.1 + 0.2, None),
        (f64::NAN, None),
        (f64::INFINITY, None),
    ] {
        let fast = log::milli_decimal(&mut buffer, value).map(str::to_owned);
        assert_eq!(fast.as_deref(), text, "{value:?}");
        if let Some(text) = text {
            assert_eq!(text, format!("{value:?}"));
        }
    }
}

#[test]
fn the_date_and_time_are_those_of_the_second() {
    for (seconds, text) in [
        (0, "1970-01-01T00:00:00"),
        (59, "1970-01-01T00:00:59"),
        (86_399, "1970-01-01T23:59:59"),
        (86_400, "1970-01-02T00:00:00"),
        (951_782_400, "2000-02-29T00:00:00"),
        (951_868_799, "2000-02-29T23:59:59"),
        (1_709_164_800, "2024-02-29T00:00:00"),
        (1_735_689_599, "2024-12-31T23:59:59"),
        (1_764_656_879, "2025-12-02T06:27:59"),
        (1_798_848_000, "2027-01-02T00:00:00"),
        (4_107_542_400, "2100-03-01T00:00:00"),
        (253_402_300_799, "9999-12-31T23:59:59"),
    ] {
        assert_eq!(std::str::from_utf8(&log::date_time(seconds)).unwrap(), text);
    }
}

#[test]
fn the_cached_timer_writes_what_the_default_timer_writes() {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

    let time = |timer: &dyn FormatTime| {
        let mut text = String::new();
        timer.format_time(&mut Writer::new(&mut text)).unwrap();
        text
    };
    // Twice within one second (a few tries, in case a second ends between them), and
    // again from the cache.
    let mut same_second = 0;
    for _ in 0..20 {
        let (default, cached, again) = (
            time(&SystemTime),
            time(&log::CachedTime),
            time(&log::CachedTime),
        );
        assert_eq!(cached.len(), default.len(), "{cached} {default}");
        assert!(
            cached.ends_with('Z') && cached.as_bytes()[19] == b'.',
            "{cached}"
        );
        if default[..19] == cached[..19] && again[..19] == cached[..19] {
            same_second += 1;
            assert!(cached[20..26] >= default[20..26] && again[20..26] >= cached[20..26]);
        }
    }
    assert!(same_second > 0);
}
