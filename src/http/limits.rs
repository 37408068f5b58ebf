//! Slow clients, as the gateway limits them, for a core exposed without one: the request
//! head must arrive within `server.header_timeout_secs` (actix's client request timeout) and
//! the body within `server.body_timeout_secs` of the head; bodies are capped per route (SCEP
//! `scep.max_message_bytes`, the API 64 KiB). A body that is too slow ends the request with
//! 400 (how actix answers a body that failed to arrive) and the reason, "the request body did
//! not arrive within N s".

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// A request body that fails once its deadline passes. The timer is armed only when the body
/// first makes its reader wait: a body that came with its head (an OCSP request, most SCEP
/// messages) costs no timer.
pub(crate) struct TimedPayload {
    inner: actix_web::dev::Payload,
    /// When the head was read plus the timeout.
    until: tokio::time::Instant,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    timeout: Duration,
}

impl TimedPayload {
    pub(crate) fn new(inner: actix_web::dev::Payload, timeout: Duration) -> TimedPayload {
        TimedPayload {
            inner,
            until: tokio::time::Instant::now() + timeout,
            deadline: None,
            timeout,
        }
    }
}

/// The error a too-slow body gets (its text reaches the client).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0} s")]
pub(crate) struct SlowBody(u64);

impl Stream for TimedPayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        let until = self.until;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
        if deadline.as_mut().poll(cx).is_ready() {
            let secs = self.timeout.as_secs();
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                SlowBody(secs),
            )))));
        }
        Poll::Pending
    }
}

/// Wrap a request's body in the deadline.
pub(crate) fn time_body(req: &mut actix_web::dev::ServiceRequest, timeout: Duration) {
    use actix_web::HttpMessage;
    let payload = req.take_payload();
    let timed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(TimedPayload::new(payload, timeout));
    req.set_payload(actix_web::dev::Payload::from(timed));
}
