//! Loading batches ahead of the net.
//!
//! A [`Feed`] owns a [`BatchLoader`] (what one batch is) and, once the net first asks for
//! data, a [`Prefetcher`]: one background thread that builds batches in order into a bounded
//! queue ([`QUEUE`] waiting plus the one being built), decoding each batch's samples in
//! parallel on a small thread pool of its own (so decoding never occupies the pool the layers
//! compute on). A training step waits for disk only when decoding is slower than the net.
//!
//! A loader error travels through the queue to the forward pass that needed that batch; the
//! thread then stops, and the next request starts a new one at the same pass (so the error
//! repeats rather than being skipped). Dropping the feed stops and joins the thread.

use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Batches waiting in the queue (one more is being built behind them).
pub const QUEUE: usize = 2;

/// Most decoding threads per data layer.
pub const MAX_THREADS: usize = 4;

/// One batch: for each top, its shape and values.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `(shape, values)` per top.
    pub tops: Vec<(Vec<usize>, Vec<f32>)>,
}

/// What a data layer loads: batch number `pass` of the run, as a pure function of `pass`.
pub trait BatchLoader: Send + Sync + 'static {
    /// Builds batch `pass`, decoding in parallel on `pool`.
    fn load(&self, pass: u64, pool: &rayon::ThreadPool) -> Result<Batch>;
}

/// A background thread producing batches `first, first + 1, ...` into a bounded queue.
pub struct Prefetcher {
    rx: Option<Receiver<Result<Batch>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Prefetcher {
    /// Starts producing from batch `first`.
    pub fn start(loader: Arc<dyn BatchLoader>, first: u64, pool: Arc<rayon::ThreadPool>) -> Result<Self> {
        let (tx, rx) = sync_channel::<Result<Batch>>(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("crema-prefetch".into())
            .spawn(move || {
                let mut pass = first;
                while !flag.load(Ordering::Relaxed) {
                    let batch = loader.load(pass, &pool);
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        break;
                    }
                    pass += 1;
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the data loading thread: {e}")))?;
        Ok(Prefetcher { rx: Some(rx), stop, thread: Some(thread) })
    }

    /// The next batch, waiting for it if need be.
    pub fn recv(&mut self) -> Result<Batch> {
        let rx = self.rx.as_ref().ok_or_else(|| Error::Internal("prefetcher already stopped".into()))?;
        rx.recv().map_err(|_| Error::Internal("the data loading thread stopped unexpectedly".into()))?
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver makes a blocked send return, so the thread can see the flag.
        self.rx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A data layer's supply of batches: the loader, the prefetch thread once started, and which
/// forward pass comes next.
pub struct Feed<L: BatchLoader> {
    loader: Arc<L>,
    running: Option<Prefetcher>,
    pool: Option<Arc<rayon::ThreadPool>>,
    pending: Option<Batch>,
    next_pass: u64,
    probe: Vec<Vec<usize>>,
}

impl<L: BatchLoader> Feed<L> {
    /// A feed starting at pass 0; `probe` gives the top shapes to report before the first
    /// batch is loaded (from the first sample, read when the layer is built).
    pub fn new(loader: L, probe: Vec<Vec<usize>>) -> Self {
        Feed { loader: Arc::new(loader), running: None, pool: None, pending: None, next_pass: 0, probe }
    }

    /// The loader, to change before loading starts again (stops the thread and forgets the
    /// batches loaded ahead).
    pub fn loader_mut(&mut self) -> Result<&mut L> {
        self.running = None;
        self.pending = None;
        Arc::get_mut(&mut self.loader).ok_or_else(|| Error::Internal("data loader still shared".into()))
    }

    /// The loader.
    pub fn loader(&self) -> &L {
        &self.loader
    }

    /// The forward pass whose batch comes next.
    pub fn next_pass(&self) -> u64 {
        self.next_pass
    }

    /// Makes the next batch the one of forward pass `pass` (a resumed run's position).
    pub fn seek(&mut self, pass: u64) {
        if pass != self.next_pass {
            self.running = None;
            self.pending = None;
            self.next_pass = pass;
        }
    }

    /// The top shapes of the next batch: loaded and waiting once loading has started, else
    /// the probed shapes.
    pub fn shapes(&mut self) -> Result<Vec<Vec<usize>>> {
        if self.running.is_some() && self.pending.is_none() {
            self.pending = Some(self.receive()?);
        }
        Ok(match &self.pending {
            Some(b) => b.tops.iter().map(|(s, _)| s.clone()).collect(),
            None => self.probe.clone(),
        })
    }

    /// The next batch (starting the prefetch thread on first use).
    pub fn take(&mut self) -> Result<Batch> {
        let batch = match self.pending.take() {
            Some(b) => b,
            None => self.receive()?,
        };
        self.next_pass += 1;
        Ok(batch)
    }

    fn receive(&mut self) -> Result<Batch> {
        if self.running.is_none() {
            let pool = match &self.pool {
                Some(p) => p.clone(),
                None => {
                    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(MAX_THREADS);
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .thread_name(|i| format!("crema-decode-{i}"))
                        .build()
                        .map_err(|e| Error::Internal(format!("cannot start the image decoding threads: {e}")))?;
                    let pool = Arc::new(pool);
                    self.pool = Some(pool.clone());
                    pool
                }
            };
            let loader: Arc<dyn BatchLoader> = self.loader.clone();
            self.running = Some(Prefetcher::start(loader, self.next_pass, pool)?);
        }
        let result = self.running.as_mut().map(|p| p.recv()).unwrap_or_else(|| Err(Error::Internal("no prefetcher".into())));
        if result.is_err() {
            // The thread has stopped after an error: the next request starts it again here.
            self.running = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    struct Counting {
        loaded: Arc<AtomicU64>,
        fail_at: Option<u64>,
    }

    impl BatchLoader for Counting {
        fn load(&self, pass: u64, _: &rayon::ThreadPool) -> Result<Batch> {
            self.loaded.fetch_add(1, Ordering::SeqCst);
            if Some(pass) == self.fail_at {
                return Err(Error::Decode { file: format!("file{pass}.png"), msg: "broken".into() });
            }
            Ok(Batch { tops: vec![(vec![1], vec![pass as f32])] })
        }
    }

    fn value(b: &Batch) -> f32 {
        b.tops[0].1[0]
    }

    #[test]
    fn batches_in_order_bounded_ahead_and_seekable() {
        let loaded = Arc::new(AtomicU64::new(0));
        let mut feed = Feed::new(Counting { loaded: loaded.clone(), fail_at: None }, vec![vec![1]]);
        assert_eq!(loaded.load(Ordering::SeqCst), 0, "nothing loads before the first request");
        assert_eq!(feed.shapes().unwrap(), [vec![1]]);
        assert_eq!(value(&feed.take().unwrap()), 0.0);
        assert_eq!(value(&feed.take().unwrap()), 1.0);
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Taken 2, at most QUEUE waiting and one being built (blocked on send).
        assert!(loaded.load(Ordering::SeqCst) <= 2 + QUEUE as u64 + 1, "{}", loaded.load(Ordering::SeqCst));
        feed.seek(10);
        assert_eq!(value(&feed.take().unwrap()), 10.0);
        assert_eq!(feed.next_pass(), 11);
        feed.seek(11); // already there: keeps the queue
        assert_eq!(value(&feed.take().unwrap()), 11.0);
        drop(feed); // joins the thread
    }

    #[test]
    fn an_error_reaches_the_pass_that_needed_it_and_repeats() {
        let loaded = Arc::new(AtomicU64::new(0));
        let mut feed = Feed::new(Counting { loaded, fail_at: Some(2) }, vec![vec![1]]);
        assert_eq!(value(&feed.take().unwrap()), 0.0);
        assert_eq!(value(&feed.take().unwrap()), 1.0);
        let e = feed.take().unwrap_err().to_string();
        assert_eq!(e, "file2.png: broken");
        assert_eq!(feed.next_pass(), 2, "a failed pass is not consumed");
        assert_eq!(feed.take().unwrap_err().to_string(), "file2.png: broken");
        feed.seek(3);
        assert_eq!(value(&feed.take().unwrap()), 3.0);
    }
}
