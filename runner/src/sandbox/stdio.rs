//! A plugin's stdout and stderr: kept up to a cap, the rest counted and dropped. Unlike
//! wasmtime-wasi's `MemoryOutputPipe`, a full buffer never closes the stream, so a chatty
//! plugin keeps running (Rust's `println!` panics on a closed stdout) and its log says how much
//! was cut.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: u64,
}

/// A capped, shared capture buffer; clones write to the same buffer.
#[derive(Clone)]
pub(crate) struct CappedPipe {
    cap: usize,
    inner: Arc<Mutex<Captured>>,
}

impl CappedPipe {
    pub(crate) fn new(cap: usize) -> Self {
        CappedPipe { cap, inner: Arc::default() }
    }

    fn push(&self, bytes: &[u8]) {
        let Ok(mut c) = self.inner.lock() else { return };
        let room = self.cap.saturating_sub(c.kept.len());
        let take = room.min(bytes.len());
        c.kept.extend_from_slice(&bytes[..take]);
        c.dropped += (bytes.len() - take) as u64;
    }

    /// What was kept, and how many bytes were dropped past the cap.
    pub(crate) fn contents(&self) -> (Vec<u8>, u64) {
        self.inner.lock().map(|c| (c.kept.clone(), c.dropped)).unwrap_or_default()
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedPipe {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_cap_and_counts_the_rest() {
        let mut p = CappedPipe::new(10);
        let mut q = p.clone();
        OutputStream::write(&mut p, Bytes::from_static(b"0123456")).unwrap();
        OutputStream::write(&mut q, Bytes::from_static(b"789abc")).unwrap();
        assert_eq!(p.check_write().unwrap(), 64 * 1024, "never closes");
        assert_eq!(p.contents(), (b"0123456789".to_vec(), 3));
    }
}
