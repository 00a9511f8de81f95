//! Deadlines (docs/contract.md §4.3, §4.6): how long a client may take to send its request body
//! ([`Deadlines::body`], enforced where bodies are read, `body::read_bytes`) and to read its
//! answer ([`Deadlines::send`], enforced by the kernel on every connection: [`limit_sends`]).
//! Neither lets a client hold a connection, and the memory behind it, for as long as it likes.

use std::cell::RefCell;
use std::net::TcpListener;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use actix_web::HttpMessage;
use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};

use crate::request_id;

/// How long a client may take over its side of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// A request body must arrive whole within this, counted from when prefs starts reading it;
    /// else 408 and the connection is closed (default 10 s).
    pub body: Duration,
    /// A client that reads nothing of its answer for this long is dropped (default 30 s).
    pub send: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self { body: Duration::from_secs(10), send: Duration::from_secs(30) }
    }
}

/// Makes every connection `listener` accepts give up on a client that reads nothing of its answer
/// for `send`.
///
/// actix-web has no write timeout: a connection whose client stops reading keeps its answer
/// (the whole serialized body) for as long as the client keeps the connection open. Wrapping the
/// stream in an I/O type that times out blocked writes would mean serving through
/// `actix_server` and `actix_http` directly, rebuilding what `HttpServer` sets up (workers,
/// timeouts, shutdown) and the application's configuration, whose constructor actix-web keeps
/// private. The kernel does it instead: Linux's `TCP_USER_TIMEOUT` aborts a connection whose
/// sent data stays unacknowledged, or whose peer keeps advertising a zero window (it reads
/// nothing; Linux 5.11 and later, and the stable kernels the fix went to), for longer than the
/// timeout. The write then fails, actix-http drops the connection and, with it, the answer;
/// the `answers` middleware logs it. It measures time without progress: a client that reads slowly but
/// steadily is not cut off, and the clock starts once the kernel's buffers are full. Accepted
/// sockets inherit the option from the listening one, so setting it once covers them all.
///
/// On systems other than Linux the send deadline is not enforced, and prefs says so at start.
///
/// # Errors
/// When the option cannot be set.
pub fn limit_sends(listener: &TcpListener, send: Duration) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    socket2::SockRef::from(listener).set_tcp_user_timeout(Some(send))?;
    #[cfg(not(target_os = "linux"))]
    {
        let _ = listener;
        tracing::warn!(?send, "PREFS_SEND_TIMEOUT is not enforced on this system (it needs Linux)");
    }
    Ok(())
}

/// How much of an answer is handed to actix-http at a time. actix-http asks for more only once
/// it has written what it holds, so a client that reads nothing leaves the rest here, where
/// [`answers`] sees it go.
const PIECE: usize = 64 * 1024;

/// Middleware: hands answers to actix-http [`PIECE`] by [`PIECE`] rather than whole, and logs an
/// answer dropped before it was sent whole: its connection was closed, by the client or by the
/// send deadline ([`limit_sends`]). Nothing else keeps the answer: it is freed with the
/// connection. The answer also keeps the request's body ([`RequestBody`]) until it is sent.
///
/// # Errors
/// Passes on the inner service's errors.
pub(crate) async fn answers(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let request_body = match req.take_payload() {
        Payload::None => None,
        payload => {
            let body = RequestBody(Rc::new(RefCell::new(payload)));
            req.set_payload(Payload::from(Box::pin(body.clone()) as Pin<Box<_>>));
            Some(body)
        }
    };
    let response = next.call(req).await?;
    // An answer of one piece to a request without a body goes as it is: actix-http writes it with
    // its head at once (nothing to hand on piece by piece, no body to keep).
    let small = matches!(response.response().body().size(), BodySize::Sized(size) if size <= PIECE as u64);
    if small && request_body.is_none() {
        return Ok(response.map_into_left_body());
    }
    let request_id = request_id::current();
    Ok(response
        .map_body(move |_, body| Answer {
            body: body.boxed(),
            rest: Bytes::new(),
            sent: 0,
            finished: false,
            last_sent: Instant::now(),
            request_id,
            _request_body: request_body,
        })
        .map_into_right_body())
}

/// A request's body, which the handler reads through this, and which its answer keeps until it
/// is sent. When it sends an answer, actix-http closes the connection if the request's body was
/// not read whole (a request refused before its body, a body past its deadline: docs/contract.md
/// §4.3), unless the body is chunked and its reader gone: then it keeps the connection and reads
/// the rest, however long the client takes to send it. Kept alive, the reader makes it close the
/// connection in every case.
#[derive(Clone)]
struct RequestBody(Rc<RefCell<Payload>>);

impl Stream for RequestBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.borrow_mut().poll_next_unpin(cx)
    }
}

/// An answer on its way out, in pieces.
struct Answer {
    body: BoxBody,
    /// What the body gave and was not handed on yet.
    rest: Bytes,
    /// Bytes handed on.
    sent: usize,
    finished: bool,
    last_sent: Instant,
    request_id: String,
    /// Held until the answer is dropped, after actix-http has decided whether to close the
    /// connection.
    _request_body: Option<RequestBody>,
}

impl MessageBody for Answer {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        match self.body.size() {
            BodySize::Sized(size) => BodySize::Sized(size + self.rest.len() as u64),
            other => other,
        }
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = &mut *self;
        if this.rest.is_empty() {
            match ready!(Pin::new(&mut this.body).poll_next(cx)) {
                Some(Ok(chunk)) => this.rest = chunk,
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => {
                    this.finished = true;
                    return Poll::Ready(None);
                }
            }
        }
        let piece = this.rest.split_to(this.rest.len().min(PIECE));
        this.sent += piece.len();
        this.last_sent = Instant::now();
        Poll::Ready(Some(Ok(piece)))
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        if self.sent > 0 && !self.finished {
            tracing::warn!(
                request_id = %self.request_id,
                sent = self.sent,
                unsent = self.rest.len() as u64 + body_left(&self.body),
                idle_ms = self.last_sent.elapsed().as_millis() as u64,
                "answer dropped before it was sent whole: the client went away, or read nothing for the send deadline"
            );
        }
    }
}

/// What is left of a body whose size is known.
fn body_left(body: &BoxBody) -> u64 {
    match body.size() {
        BodySize::Sized(size) => size,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer goes out in pieces of at most [`PIECE`] bytes, all of it, in order, and says
    /// its whole size before.
    #[actix_web::test]
    async fn an_answer_goes_out_whole_in_pieces() {
        let whole: Vec<u8> = (0..PIECE * 2 + 10).map(|i| (i % 251) as u8).collect();
        let mut answer = Answer {
            body: BoxBody::new(Bytes::from(whole.clone())),
            rest: Bytes::new(),
            sent: 0,
            finished: false,
            last_sent: Instant::now(),
            request_id: String::new(),
            _request_body: None,
        };
        assert_eq!(answer.size(), BodySize::Sized(whole.len() as u64));
        let mut out = Vec::new();
        while let Some(piece) = std::future::poll_fn(|cx| Pin::new(&mut answer).poll_next(cx)).await {
            let piece = piece.unwrap();
            assert!(piece.len() <= PIECE);
            out.extend_from_slice(&piece);
        }
        assert_eq!(out, whole);
        assert!(answer.finished);
    }
}
