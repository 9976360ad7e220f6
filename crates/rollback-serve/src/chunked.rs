//! Large answers (the metrics of 10,000 targets, their list) written on the
//! blocking pool in chunks of about 128 KB and sent as each fills, instead
//! of built whole.
//!
//! Built whole, the list of 10,000 targets held its views and its JSON at
//! once (8 MB at the peak), on a blocking thread whose malloc arena then
//! kept the 8 MB resident for good (0.8 KiB a target of the `serve`
//! benchmark). In chunks, what is held at once is a page of views and the
//! chunks the client has not read yet.

use std::fmt;
use std::io;

use axum::body::{Body, Bytes};
use tokio::sync::mpsc;

/// About this many bytes a chunk. Each chunk costs a trip through the
/// channel and the HTTP writer: the serve bench's scrape of 600 KB took
/// 16 ms in chunks of 32 KB and 5 ms in chunks of 128 KB.
const CHUNK: usize = 128 * 1024;

/// Where a chunked answer is written: both `fmt::Write` (the metrics'
/// encoder) and `io::Write` (`serde_json`). A write fails once the client
/// has gone, so the writer stops early.
pub(crate) struct Chunks {
    buf: Vec<u8>,
    tx: Sender,
}

enum Sender {
    /// Waits while the client reads: for writers that hold no lock.
    Bounded(mpsc::Sender<Bytes>),
    /// Never waits: for writers holding a lock others need (the metrics'
    /// registry, which every decision updates), so a slow client cannot
    /// stall them.
    Unbounded(mpsc::UnboundedSender<Bytes>),
}

impl Chunks {
    fn send(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK + CHUNK / 4),
        ));
        match &self.tx {
            Sender::Bounded(tx) => tx.blocking_send(chunk).is_ok(),
            Sender::Unbounded(tx) => tx.send(chunk).is_ok(),
        }
    }

    fn push(&mut self, bytes: &[u8]) -> bool {
        self.buf.extend_from_slice(bytes);
        self.buf.len() < CHUNK || self.send()
    }
}

impl fmt::Write for Chunks {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.push(s.as_bytes()) {
            Ok(())
        } else {
            Err(fmt::Error)
        }
    }
}

impl io::Write for Chunks {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.push(bytes) {
            Ok(bytes.len())
        } else {
            Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client has gone",
            ))
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether the writer waits for the client to read (see [`Sender`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Waits: the writer holds no lock.
    Client,
    /// Never waits: the writer holds a lock others need.
    Writer,
}

/// A body that `write` fills on the blocking pool, chunk by chunk. What it
/// wrote before an error is sent; the error is logged (the status line has
/// gone out before).
pub(crate) fn body<E: fmt::Display>(
    pace: Pace,
    write: impl FnOnce(&mut Chunks) -> Result<(), E> + Send + 'static,
) -> Body {
    let (tx, rx) = match pace {
        Pace::Client => {
            let (tx, rx) = mpsc::channel(4);
            (Sender::Bounded(tx), Receiver::Bounded(rx))
        }
        Pace::Writer => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Sender::Unbounded(tx), Receiver::Unbounded(rx))
        }
    };
    tokio::task::spawn_blocking(move || {
        let mut chunks = Chunks {
            buf: Vec::with_capacity(CHUNK + CHUNK / 4),
            tx,
        };
        match write(&mut chunks) {
            Ok(()) => {
                chunks.send();
            }
            // Gone: nobody to tell.
            Err(_) if chunks.tx.is_closed() => {}
            Err(e) => tracing::error!("an answer could not be written in full: {e}"),
        }
    });
    Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
        let chunk = match &mut rx {
            Receiver::Bounded(r) => r.recv().await,
            Receiver::Unbounded(r) => r.recv().await,
        };
        chunk.map(|c| (Ok::<_, std::convert::Infallible>(c), rx))
    }))
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::Bounded(tx) => tx.is_closed(),
            Sender::Unbounded(tx) => tx.is_closed(),
        }
    }
}

enum Receiver {
    Bounded(mpsc::Receiver<Bytes>),
    Unbounded(mpsc::UnboundedReceiver<Bytes>),
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    async fn collect(body: Body) -> (Vec<usize>, Vec<u8>) {
        use futures::StreamExt as _;
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("a chunk");
            sizes.push(chunk.len());
            all.extend_from_slice(&chunk);
        }
        (sizes, all)
    }

    #[tokio::test]
    async fn a_large_answer_comes_in_chunks_whole_and_in_order() {
        for pace in [Pace::Client, Pace::Writer] {
            let body = body(pace, |out| -> Result<(), io::Error> {
                for i in 0..100_000 {
                    fmt::Write::write_fmt(out, format_args!("line {i}\n"))
                        .map_err(|_| io::Error::other("fmt"))?;
                    out.write_all(b"")?;
                }
                Ok(())
            });
            let (sizes, all) = collect(body).await;
            let expected: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
            assert_eq!(String::from_utf8(all).unwrap(), expected, "{pace:?}");
            assert!(sizes.len() > 4, "{pace:?}: {sizes:?}");
            assert!(
                sizes.iter().all(|s| *s <= CHUNK + 16),
                "{pace:?}: {sizes:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_writer_stops_when_the_client_has_gone() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let body = body(Pace::Client, move |out| -> Result<(), io::Error> {
            let mut written = 0usize;
            let result = loop {
                if let Err(e) = out.write_all(&[b'x'; 1024]) {
                    break Err(e);
                }
                written += 1024;
                if written > 1 << 30 {
                    break Ok(());
                }
            };
            done_tx.send((written, result.is_err())).unwrap();
            result
        });
        drop(body);
        let (written, failed) = tokio::task::spawn_blocking(move || done_rx.recv().unwrap())
            .await
            .unwrap();
        assert!(failed, "the write failed once nobody reads");
        assert!(written < 1 << 20, "it stopped early: {written} bytes");
    }
}
