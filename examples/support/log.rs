//! The quick start's log plumbing when stdout is not a terminal: [`BufferedLog`], a buffered
//! writer (one `write` for many lines); [`AccessFields`], tracing-subscriber's default field
//! format written without its per-field overhead; and [`CachedTime`], its default timer
//! formatting the date once a second. The same text, byte for byte (`tests/log_format.rs`
//! compares them).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::FormatFields as _;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::FormatTime;

/// Stdout through a 64 KiB buffer: written when it fills, every 100 ms, at once after a
/// warning or an error, after a panic, and by [`BufferedLog::flush`] (call it before
/// exiting). A process killed with SIGKILL loses at most the last 100 ms of INFO lines, never
/// a warning or an error. Every line is written whole, in the order it was logged.
#[derive(Clone, Copy, Debug)]
pub struct BufferedLog;

static LOG_BUFFER: LazyLock<Mutex<std::io::BufWriter<std::io::Stdout>>> = LazyLock::new(|| {
    Mutex::new(std::io::BufWriter::with_capacity(
        64 * 1024,
        std::io::stdout(),
    ))
});

impl BufferedLog {
    /// The writer, with a thread that flushes it every 100 ms (and a panic hook that
    /// flushes it after the panic's message).
    pub fn start() -> Self {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            Self::flush();
        }));
        let _ = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    Self::flush();
                }
            });
        Self
    }

    /// Writes out what the buffer holds.
    pub fn flush() {
        let mut buffer = LOG_BUFFER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = buffer.flush();
    }
}

/// One log line into the buffer; `flush` set for warnings and errors.
pub struct LogLine {
    flush: bool,
}

impl std::io::Write for LogLine {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut buffer = LOG_BUFFER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Whole, under the lock: lines from several threads never interleave.
        buffer.write_all(line)?;
        if self.flush {
            buffer.flush()?;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        BufferedLog::flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferedLog {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine { flush: true }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LogLine {
        LogLine {
            flush: *meta.level() <= tracing::Level::WARN,
        }
    }
}

/// tracing-subscriber's [`DefaultFields`](tracing_subscriber::fmt::format::DefaultFields)
/// without colours: `name=value` pairs separated by spaces, strings quoted and escaped as
/// `{:?}` does, the message as it is with terminal control characters escaped. The same
/// text, made with fewer formatting calls: a string of printable ASCII (the usual case) is
/// copied, not escaped character by character, and a name is written as it is rather than
/// through a style. Anything else (errors, unusual names) goes through `DefaultFields`'
/// own visitor. For writers without ANSI colours only.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessFields;

impl<'a> MakeVisitor<Writer<'a>> for AccessFields {
    type Visitor = AccessVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> AccessVisitor<'a> {
        AccessVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// The visitor of [`AccessFields`].
pub struct AccessVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

/// Printable ASCII other than `"` and `\`: `{:?}` writes it unchanged between quotes, and
/// the message's escaping leaves it as it is.
fn plain(text: &str) -> bool {
    text.bytes()
        .all(|byte| (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\')
}

impl AccessVisitor<'_> {
    /// The separator and `name=`, or `false` for a field the default format skips.
    fn name(&mut self, field: &Field) -> bool {
        let name = field.name();
        if name.starts_with("log.") {
            return false;
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.separator();
        self.result = self
            .result
            .and(self.writer.write_str(name))
            .and(self.writer.write_char('='));
        true
    }

    /// The space before every field but the first.
    fn separator(&mut self) {
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.result = self.result.and(self.writer.write_char(' '));
        }
    }

    /// The message (no name), with terminal control characters escaped as the default
    /// format escapes them.
    fn message(&mut self, value: &dyn fmt::Debug) {
        self.separator();
        let written = if self.writer.sanitizes_ansi_escapes() {
            write!(Sanitizing(&mut self.writer), "{value:?}")
        } else {
            write!(self.writer, "{value:?}")
        };
        self.result = self.result.and(written);
    }

    /// `value` as `{:?}` writes it.
    fn debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.name(field) {
            self.result = self.result.and(write!(self.writer, "{value:?}"));
        }
    }

    /// An integer as `{:?}` (and `{}`) writes it.
    fn integer(&mut self, field: &Field, negative: bool, magnitude: u64) {
        if self.result.is_err() {
        } else if field.name() == "message" {
            let value: &dyn fmt::Debug = match negative {
                true => &format_args!("-{magnitude}"),
                false => &magnitude,
            };
            self.message(value);
        } else if self.name(field) {
            let mut digits = [0u8; 21];
            let text = decimal(&mut digits, negative, magnitude);
            self.result = self.result.and(self.writer.write_str(text));
        }
    }
}

/// `value` as `{:?}` writes it, when it is a whole number of thousandths (a latency in ms
/// to the microsecond) from 0 up to 10⁹: the thousandths in decimal, trailing zeros dropped,
/// at least one digit after the point (`0.007`, `1.5`, `2.0`). Such a number's shortest
/// decimal form, which `{:?}` writes, is that one: the doubles near it are far closer
/// together than 0.001. `None` for any other value (the caller formats it with `{:?}`).
pub fn milli_decimal(buffer: &mut [u8; 24], value: f64) -> Option<&str> {
    if !(0.0..1e9).contains(&value) || value.is_sign_negative() {
        return None;
    }
    let thousandths = (value * 1000.0).round() as u64;
    if thousandths as f64 / 1000.0 != value {
        return None;
    }
    let (whole, mut fraction) = (thousandths / 1000, thousandths % 1000);
    // The fraction's digits, trailing zeros dropped, at least one.
    let mut digits = 3;
    while digits > 1 && fraction % 10 == 0 {
        fraction /= 10;
        digits -= 1;
    }
    let mut at = buffer.len();
    for _ in 0..digits {
        at -= 1;
        buffer[at] = b'0' + (fraction % 10) as u8;
        fraction /= 10;
    }
    at -= 1;
    buffer[at] = b'.';
    let mut whole_digits = [0u8; 21];
    let whole = decimal(&mut whole_digits, false, whole).as_bytes();
    at -= whole.len();
    buffer[at..at + whole.len()].copy_from_slice(whole);
    std::str::from_utf8(&buffer[at..]).ok()
}

/// `magnitude` in decimal (after a `-` if `negative`), written at the end of `buffer`.
fn decimal(buffer: &mut [u8; 21], negative: bool, mut magnitude: u64) -> &str {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if negative {
        at -= 1;
        buffer[at] = b'-';
    }
    std::str::from_utf8(&buffer[at..]).unwrap_or_default()
}

/// tracing-subscriber's [`SystemTime`](tracing_subscriber::fmt::time::SystemTime) timer
/// (`2026-12-02T06:27:59.673774Z`, UTC), with the date and time of the current second made
/// once per second and thread rather than for every line.
#[derive(Clone, Copy, Debug, Default)]
pub struct CachedTime;

thread_local! {
    /// The second last written, and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: std::cell::Cell<(u64, [u8; 19])> =
        const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// The first second of the year 10000: from there on the default timer's format changes.
const YEAR_10000: u64 = 253_402_300_800;

impl FormatTime for CachedTime {
    fn format_time(&self, writer: &mut Writer<'_>) -> fmt::Result {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let Some(since) = since.ok().filter(|since| since.as_secs() < YEAR_10000) else {
            return tracing_subscriber::fmt::time::SystemTime.format_time(writer);
        };
        let seconds = since.as_secs();
        let date_time = SECOND.with(|second| match second.get() {
            (cached, text) if cached == seconds => text,
            _ => {
                let text = date_time(seconds);
                second.set((seconds, text));
                text
            }
        });
        let mut line = [0u8; 27];
        line[..19].copy_from_slice(&date_time);
        line[19] = b'.';
        let mut micros = since.subsec_micros();
        for at in (20..26).rev() {
            line[at] = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        line[26] = b'Z';
        writer.write_str(std::str::from_utf8(&line).unwrap_or_default())
    }
}

/// tracing-subscriber's default line format ([`Format<Full>`](tracing_subscriber::fmt::format::Full)
/// without colours, with `timer`): time, level, the spans from the root with their fields,
/// target, fields. The same text, written piece by piece rather than through the
/// formatter's styled `write!`s (six of them per line, each an ANSI style painted even when
/// colours are off). Lines with colours, and events from the `log` crate (whose target and
/// fields tracing-log rewrites), are written by the default format itself.
#[derive(Clone, Debug)]
pub struct AccessFormat<T = CachedTime> {
    timer: T,
    default: tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, T>,
}

impl Default for AccessFormat {
    fn default() -> Self {
        Self::with_timer(CachedTime)
    }
}

impl<T: FormatTime + Clone> AccessFormat<T> {
    /// The format with `timer` for the time at the start of each line.
    pub fn with_timer(timer: T) -> Self {
        Self {
            default: tracing_subscriber::fmt::format().with_timer(timer.clone()),
            timer,
        }
    }
}

impl<S, N, T> tracing_subscriber::fmt::FormatEvent<S, N> for AccessFormat<T>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if writer.has_ansi_escapes() || meta.fields().field("log.target").is_some() {
            return self.default.format_event(ctx, writer, event);
        }
        if self.timer.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        writer.write_str(match *meta.level() {
            tracing::Level::TRACE => " TRACE ",
            tracing::Level::DEBUG => " DEBUG ",
            tracing::Level::INFO => "  INFO ",
            tracing::Level::WARN => "  WARN ",
            tracing::Level::ERROR => " ERROR ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                seen = true;
                let extensions = span.extensions();
                if let Some(fields) =
                    extensions.get::<tracing_subscriber::fmt::FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of `seconds` since the Unix epoch, before the year 10000
/// (the civil-from-days algorithm of H. Hinnant's date library).
pub fn date_time(seconds: u64) -> [u8; 19] {
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let shifted = days + 719_468; // days since 0000-03-01
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    let mut text = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for index in (at..at + width).rev() {
            text[index] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, second_of_day / 3_600);
    put(14, 2, second_of_day / 60 % 60);
    put(17, 2, second_of_day % 60);
    text
}

/// Escapes what tracing-subscriber escapes in a message (terminal control characters),
/// copying runs of printable ASCII as they are.
struct Sanitizing<'w, 'a>(&'w mut Writer<'a>);

impl fmt::Write for Sanitizing<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if text.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
            return self.0.write_str(text);
        }
        for ch in text.chars() {
            match ch {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                ch if ('\u{80}'..='\u{9f}').contains(&ch) => {
                    write!(self.0, "\\u{{{:x}}}", ch as u32)?
                }
                ch => self.0.write_char(ch)?,
            }
        }
        Ok(())
    }
}

impl Visit for AccessVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            if value.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
                // Printable ASCII: written as it is, escaped or not.
                self.separator();
                self.result = self.result.and(self.writer.write_str(value));
            } else {
                // As the default format does: the text as a `format_args!("{}")`.
                self.message(&format_args!("{value}"));
            }
        } else if plain(value) {
            if self.name(field) {
                self.result = self
                    .result
                    .and(self.writer.write_char('"'))
                    .and(self.writer.write_str(value))
                    .and(self.writer.write_char('"'));
            }
        } else {
            self.debug(field, &value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.integer(field, false, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.integer(field, value < 0, value.unsigned_abs());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        // Its list of sources: as the default format writes it.
        let is_empty = std::mem::replace(&mut self.is_empty, false);
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), is_empty);
        visitor.record_error(field, value);
        self.result = visitor.finish();
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.result.is_err() {
            return;
        }
        let mut text = [0u8; 24];
        match milli_decimal(&mut text, value) {
            Some(text) if field.name() != "message" => {
                if self.name(field) {
                    self.result = self.result.and(self.writer.write_str(text));
                }
            }
            _ => self.record_debug(field, &value),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            self.message(value);
        } else {
            self.debug(field, value);
        }
    }
}

impl VisitOutput<fmt::Result> for AccessVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for AccessVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}
