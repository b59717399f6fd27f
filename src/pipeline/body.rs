//! The response body the layer returns, and the buffer a request body is collected into.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::pipeline::reject::RejectionKind;

pin_project! {
    /// The body of a response from [`VerifyWebhook`](crate::VerifyWebhook): the inner
    /// service's body, or the short plain-text reason of an answer the layer made itself.
    ///
    /// ```
    /// use http_body_util::BodyExt;
    /// use tower::{Layer, ServiceExt};
    /// use tower_webhook::{scheme::StandardWebhooks, VerifyWebhookLayer};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let inner = tower::service_fn(|_request: http::Request<http_body_util::Full<bytes::Bytes>>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::new())))
    /// });
    /// let service = VerifyWebhookLayer::new(StandardWebhooks::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?).layer(inner);
    /// let response = service.oneshot(http::Request::new(http_body_util::Full::new(bytes::Bytes::new()))).await?;
    /// // The layer's own answer: its reason as the body.
    /// let text = response.into_body().collect().await?.to_bytes();
    /// assert_eq!(text.as_ref(), b"missing webhook-id");
    /// # Ok(())
    /// # }
    /// ```
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        Own { text: Option<Bytes> },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    pub(crate) fn own(text: Bytes) -> Self {
        Self {
            kind: Kind::Own {
                text: Some(text).filter(|text| !text.is_empty()),
            },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body.poll_frame(cx),
            KindProj::Own { text } => Poll::Ready(text.take().map(|text| Ok(Frame::data(text)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Own { text } => text.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Own { text } => SizeHint::with_exact(text.as_ref().map_or(0, |t| t.len() as u64)),
        }
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Inner { .. } => "ResponseBody::Inner",
            Kind::Own { .. } => "ResponseBody::Own",
        })
    }
}

/// A request body gathered into one `Bytes`, refusing to grow past a limit.
///
/// A body that arrives in one chunk (the usual case for a small webhook, and always for a
/// `Full` body) is kept as that chunk without a copy; later chunks are appended into one
/// buffer that grows with what arrives. It is never sized from the length the body
/// announces: a `Content-Length` costs nothing to send, and a thousand connections that each
/// announce a megabyte and send two bytes must not reserve a gigabyte.
#[derive(Debug)]
pub(crate) struct Collector {
    first: Option<Bytes>,
    rest: Option<BytesMut>,
    len: usize,
    limit: usize,
}

impl Collector {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            first: None,
            rest: None,
            len: 0,
            limit,
        }
    }

    fn push(&mut self, mut data: impl Buf) -> Result<(), RejectionKind> {
        let size = data.remaining();
        match self.len.checked_add(size) {
            Some(len) if len <= self.limit => self.len = len,
            _ => return Err(RejectionKind::PayloadTooLarge),
        }
        if size == 0 {
            return Ok(());
        }
        match (&mut self.first, &mut self.rest) {
            (None, None) => self.first = Some(data.copy_to_bytes(size)),
            (_, Some(rest)) => rest.put(data),
            (Some(first), None) => {
                // Later chunks grow it by doubling, so it holds at most twice what arrived.
                let mut rest = BytesMut::with_capacity(self.len);
                rest.extend_from_slice(first);
                rest.put(data);
                self.first = None;
                self.rest = Some(rest);
            }
        }
        Ok(())
    }

    /// Reads `body` to its end: the whole body, or why it cannot be had.
    pub(crate) fn poll_collect<B>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Bytes, RejectionKind>>
    where
        B: Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        loop {
            match ready!(body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    // Trailers carry nothing that is signed.
                    if let Ok(data) = frame.into_data() {
                        self.push(data)?;
                    }
                }
                Some(Err(err)) => {
                    let err = err.into();
                    tracing::warn!(error = %err, "request body failed before its end");
                    return Poll::Ready(Err(RejectionKind::BodyUnreadable));
                }
                None => return Poll::Ready(Ok(self.finish())),
            }
        }
    }

    /// The collected body; the collector is left empty.
    pub(crate) fn finish(&mut self) -> Bytes {
        match (self.first.take(), self.rest.take()) {
            (_, Some(rest)) => rest.freeze(),
            (Some(first), None) => first,
            (None, None) => Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_chunk_is_kept_without_a_copy() {
        let chunk = Bytes::from_static(b"hello");
        let mut c = Collector::new(10);
        assert!(c.push(chunk.clone()).is_ok());
        let out = c.finish();
        assert_eq!(out.as_ptr(), chunk.as_ptr());
    }

    #[test]
    fn chunks_are_joined_and_limited() {
        let mut c = Collector::new(10);
        for part in [&b"abc"[..], b"", b"defg", b"hij"] {
            assert!(c.push(part).is_ok());
        }
        assert!(c.push(&b"k"[..]).is_err());
        let mut c = Collector::new(10);
        assert!(c.push(&b"abc"[..]).is_ok());
        assert!(c.push(&b"def"[..]).is_ok());
        assert_eq!(c.finish(), "abcdef");
        assert_eq!(Collector::new(1).finish(), "");
    }

    #[test]
    fn the_buffer_grows_with_what_arrives() {
        let mut c = Collector::new(1024 * 1024);
        assert!(c.push(&b"a"[..]).is_ok());
        assert!(c.push(&b"b"[..]).is_ok());
        assert!(c.rest.as_ref().unwrap().capacity() < 1024);
        assert_eq!(c.finish(), "ab");
    }
}
