//! How a handler's run is settled when it ends: reported to the dedup layer's
//! [`Completion`], then its journal entry finished (or released for a retry) — in that
//! order, so the dedup store knows the callback was processed before the journal forgets it.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body::Body;
use http_body_util::Full;

use crate::BoxError;
use crate::body::{CollectReply, ResponseBody, StoredResponse, plain_text};
use crate::hook::{BackgroundOutcome, Completion, Recorded, RunOutcome};
use crate::journal::{EntryId, Shared as Journal};

/// What the handler ended with, sent to the waiting response future.
pub(crate) type Finished<B, E> = Result<Response<B>, Failure<E>>;

/// A handler that did not produce a response.
pub(crate) enum Failure<E> {
    Error(E),
    Panicked,
}

/// Who must hear of the run's end.
#[derive(Default)]
pub(crate) struct Settle {
    /// The dedup layer's attempt, if it claimed the callback.
    pub(crate) completion: Option<Completion>,
    /// The journal entry this run is for.
    pub(crate) entry: Option<(Arc<Journal>, EntryId)>,
}

impl Settle {
    /// Whether anyone must hear of the run's end.
    pub(crate) fn is_active(&self) -> bool {
        self.completion.is_some() || self.entry.is_some()
    }

    /// The handler ended before the callback was answered: reads its reply whole (to hand
    /// it to the dedup layer for repeats), reports, and returns the response to send,
    /// marked [`Recorded`] when a dedup layer heard of it.
    pub(crate) async fn answered<B, E>(
        self,
        finished: Finished<B, E>,
    ) -> Result<Response<ResponseBody<B>>, E>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (result, answered) = match finished {
            Ok(response) if !response.status().is_server_error() => {
                let (parts, body) = response.into_parts();
                match CollectReply::new(body).await {
                    Ok(bytes) => {
                        let answered = StoredResponse {
                            status: parts.status,
                            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
                            body: bytes.clone(),
                        };
                        let response = Response::from_parts(parts, Full::new(bytes));
                        (Ok(response.map(ResponseBody::own)), Some(answered))
                    }
                    Err(failed) => (Ok(failed.map(ResponseBody::own)), None),
                }
            }
            Ok(response) => (Ok(response.map(ResponseBody::service)), None),
            Err(Failure::Error(error)) => (Err(error), None),
            Err(Failure::Panicked) => (Ok(panicked().map(ResponseBody::own)), None),
        };
        let recorded = self.completion.is_some();
        self.report(answered).await;
        result.map(|mut response| {
            if recorded {
                response.extensions_mut().insert(Recorded);
            }
            response
        })
    }

    /// The handler ended in the background, after `ack` was answered.
    pub(crate) async fn in_background(self, outcome: BackgroundOutcome, ack: &StoredResponse) {
        let answered = (outcome == BackgroundOutcome::Completed).then(|| ack.clone());
        self.report(answered).await;
    }

    /// The handler never ran to its end here (its caller went away before it was polled, or
    /// the runtime is stopping): the entry is left for a retry.
    pub(crate) async fn abandoned(self) {
        self.report(None).await;
    }

    async fn report(self, answered: Option<StoredResponse>) {
        let processed = answered.is_some();
        if let Some(completion) = &self.completion {
            let outcome = match answered {
                Some(answered) => RunOutcome::Completed { answered },
                None => RunOutcome::Failed,
            };
            completion.record(outcome).await;
        }
        if let Some((journal, id)) = self.entry {
            if processed {
                journal.finish(&id).await;
            } else {
                journal.release(&id).await;
            }
        }
    }
}

/// The answer for a handler that panicked before the deadline (not processed: WeChat may
/// retry).
pub(crate) fn panicked() -> Response<Full<Bytes>> {
    plain_text(StatusCode::INTERNAL_SERVER_ERROR, "the handler panicked")
}
