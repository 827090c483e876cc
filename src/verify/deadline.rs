//! [`BodyDeadline`]: when reading a callback's body gives up (feature `body-timeout`).

use std::task::{Context, Poll};
use std::time::Instant;

/// The body-read deadline of one request. Its timer is made only if the body is not there
/// at the first poll (a buffered body, as in tests and benchmarks, never needs one), and
/// only inside a tokio runtime: elsewhere the deadline is not enforced.
pub(crate) struct BodyDeadline {
    at: Option<Instant>,
    #[cfg(feature = "body-timeout")]
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl BodyDeadline {
    /// A deadline at `at`, or none.
    pub(crate) fn new(at: Option<Instant>) -> Self {
        Self {
            at,
            #[cfg(feature = "body-timeout")]
            sleep: None,
        }
    }

    /// Ready once the deadline has passed; call it when the body is not ready.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        #[cfg(feature = "body-timeout")]
        {
            let Some(at) = self.at else {
                return Poll::Pending;
            };
            if self.sleep.is_none() {
                if tokio::runtime::Handle::try_current().is_err() {
                    self.at = None;
                    return Poll::Pending;
                }
                self.sleep = Some(Box::pin(tokio::time::sleep_until(at.into())));
            }
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().poll(cx),
                None => Poll::Pending,
            }
        }
        #[cfg(not(feature = "body-timeout"))]
        {
            let _ = (cx, self.at);
            Poll::Pending
        }
    }
}
