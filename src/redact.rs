//! What the crate writes into a log line from a request: bounded, escaped, and rate limited.
//!
//! - [`Untrusted`] shows at most [`MAX_INPUT_BYTES`] bytes of an input text with every
//!   control or invisible character escaped (`\n`, `\r`, `\u{1b}`, `\u{202e}` …) and `…` if
//!   it was cut, so a log line never carries a raw line break or terminal escape and never
//!   more than a short, fixed amount of what a client sent.
//! - [`LogBudget`] lets a few lines per interval through and counts the rest, so a flood of
//!   bad requests costs a counter increment per request, not a log line; the next line let
//!   through says how many were left out.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// The most bytes of one input text that reach a log line.
pub(crate) const MAX_INPUT_BYTES: usize = 64;

/// An input text as it may be logged: cut to [`MAX_INPUT_BYTES`] bytes (on a character
/// boundary, `…` marking the cut) with control and invisible characters escaped.
///
/// `Display` writes it bare (for paths); `Debug` writes it in double quotes (for names
/// taken from a body).
#[derive(Clone, Copy)]
pub(crate) struct Untrusted<'a>(pub(crate) &'a str);

impl Untrusted<'_> {
    /// The text that is shown (before escaping) and whether it was cut.
    fn shown(&self) -> (&str, bool) {
        let text = self.0;
        if text.len() <= MAX_INPUT_BYTES {
            return (text, false);
        }
        let mut end = MAX_INPUT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        (&text[..end], true)
    }
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (shown, cut) = self.shown();
        for c in shown.chars() {
            // `escape_debug` escapes control characters, quotes, backslashes, and characters
            // that are not printable (bidi overrides, zero-width ones …).
            if c == ' ' || (c.is_ascii_graphic() && c != '\\' && c != '"') {
                f.write_char(c)?;
            } else {
                write!(f, "{}", c.escape_debug())?;
            }
        }
        if cut {
            f.write_char('…')?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// `text` as it may be logged (see [`Untrusted`]), owned.
pub(crate) fn bounded(text: &str) -> Box<str> {
    Untrusted(text).to_string().into_boxed_str()
}

/// How many lines a [`LogBudget`] lets through per interval.
pub(crate) const LINES_PER_INTERVAL: u32 = 10;
/// The interval of a [`LogBudget`].
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// Lets at most [`LINES_PER_INTERVAL`] lines through per [`INTERVAL`] and counts the rest.
/// Lock-free: a request that is not logged costs two atomic operations.
#[derive(Debug)]
pub(crate) struct LogBudget {
    start: Instant,
    /// The interval the counters below are for, as a count of intervals since `start`.
    interval: AtomicU64,
    lines: AtomicU32,
    suppressed: AtomicU64,
}

/// What a [`LogBudget`] says about one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Log it; `suppressed` lines were left out since the last one that was logged.
    Log { suppressed: u64 },
    /// Leave it out (it is counted, and the next line logged says so).
    Suppress,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            interval: AtomicU64::new(0),
            lines: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl LogBudget {
    /// Whether the next line may be logged.
    pub(crate) fn permit(&self) -> Permit {
        let now = (self.start.elapsed().as_millis() / INTERVAL.as_millis()) as u64;
        let seen = self.interval.load(Relaxed);
        if now != seen
            && self
                .interval
                .compare_exchange(seen, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.lines.store(1, Relaxed);
            return Permit::Log {
                suppressed: self.suppressed.swap(0, Relaxed),
            };
        }
        if self.lines.fetch_add(1, Relaxed) < LINES_PER_INTERVAL {
            // The first lines of an interval also carry what the previous one left out.
            Permit::Log {
                suppressed: self.suppressed.swap(0, Relaxed),
            }
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            Permit::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        let shown = Untrusted("a\r\nERROR forged\u{1b}[31m\t\u{202e}\u{200b}\\\"é").to_string();
        assert_eq!(
            shown,
            "a\\r\\nERROR forged\\u{1b}[31m\\t\\u{202e}\\u{200b}\\\\\\\"é"
        );
        assert!(!shown.chars().any(char::is_control));
        assert_eq!(format!("{:?}", Untrusted("x y")), "\"x y\"");
    }

    #[test]
    fn long_input_is_cut_on_a_character_boundary() {
        let long = "é".repeat(1_000);
        let shown = Untrusted(&long).to_string();
        assert!(shown.ends_with('…'));
        assert_eq!(shown.len(), MAX_INPUT_BYTES + '…'.len_utf8());
        let short = "/wechat";
        assert_eq!(Untrusted(short).to_string(), short);
        // The worst case: every byte kept is a control character, escaped as `\u{..}`.
        let worst = Untrusted(&"\u{1}".repeat(10_000)).to_string();
        assert!(worst.len() <= MAX_INPUT_BYTES * 6 + 3, "{}", worst.len());
    }

    #[test]
    fn a_flood_is_logged_a_few_times_then_counted() {
        let budget = LogBudget::default();
        let logged = (0..10_000)
            .filter(|_| matches!(budget.permit(), Permit::Log { .. }))
            .count();
        assert_eq!(logged, LINES_PER_INTERVAL as usize);
        assert_eq!(
            budget.suppressed.load(Relaxed),
            10_000 - u64::from(LINES_PER_INTERVAL)
        );
        // The next interval's first line reports what was left out.
        budget.interval.store(u64::MAX, Relaxed);
        assert_eq!(
            budget.permit(),
            Permit::Log {
                suppressed: 10_000 - u64::from(LINES_PER_INTERVAL)
            }
        );
        assert_eq!(budget.permit(), Permit::Log { suppressed: 0 });
    }
}
