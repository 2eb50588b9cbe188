//! The hot path's writes — delivery claims and agent results — go through
//! one writer task, which stores whatever queued up meanwhile (up to
//! [`WRITE_BATCH`]) as one transaction, in order, so that they never contend
//! for SQLite's lock. Without a running writer (tests that drive the
//! coordinator directly) each write is stored on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tether_store::{Applied, StoreError, WriteOp};
use tether_util::time::now_ms;
use tokio::sync::{mpsc, oneshot};

use super::stats::Statement;
use super::{AgentError, Coordinator};

/// Most writes stored in one transaction.
pub const WRITE_BATCH: usize = 512;

/// A write for the writer task, and where to say whether it took effect
/// (the write comes back with the answer).
type WriteJob = (WriteOp, oneshot::Sender<Result<(bool, WriteOp), String>>);

/// The queue to the writer task.
#[derive(Debug)]
pub(super) struct Writer {
    tx: mpsc::UnboundedSender<WriteJob>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<WriteJob>>>,
    running: AtomicBool,
}

impl Default for Writer {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Writer {
            tx,
            rx: Mutex::new(Some(rx)),
            running: AtomicBool::new(false),
        }
    }
}

impl Coordinator {
    /// Stores one hot-path write through the writer task, batched with
    /// whatever queued up meanwhile, or directly when no writer runs. Gives
    /// back whether it took effect, and the write itself.
    pub(super) async fn write(&self, op: WriteOp) -> Result<(bool, WriteOp), AgentError> {
        if !self.writer.running.load(Ordering::Acquire) {
            let done = self.store_batch(&[&op]).await?;
            return Ok((done.first().is_some_and(|a| a.applied), op));
        }
        let (tx, rx) = oneshot::channel();
        if self.writer.tx.send((op, tx)).is_err() {
            return Err(AgentError::Internal("the writer stopped".into()));
        }
        match rx.await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(AgentError::Internal(e)),
            Err(_) => Err(AgentError::Internal("the writer stopped".into())),
        }
    }

    /// The writer: stores the queued writes, up to [`WRITE_BATCH`] per
    /// transaction, and answers each. Runs until the coordinator stops;
    /// `tether serve` starts it.
    pub async fn run_writer(self: Arc<Self>) {
        let Some(mut rx) = self.writer.rx.lock().take() else {
            return;
        };
        self.writer.running.store(true, Ordering::Release);
        let mut batch: Vec<WriteJob> = Vec::with_capacity(WRITE_BATCH);
        while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
            let ops: Vec<&WriteOp> = batch.iter().map(|(op, _)| op).collect();
            let outcome = self.store_batch(&ops).await;
            drop(ops);
            for (k, (op, reply)) in batch.drain(..).enumerate() {
                let _ = reply.send(match &outcome {
                    Ok(done) => Ok((done.get(k).is_some_and(|a| a.applied), op)),
                    Err(e) => Err(e.to_string()),
                });
            }
        }
    }

    /// One batch stored, measured (its time, its size) and each result it
    /// stored counted (its final status, and how long after its command's
    /// SendCommand it came).
    async fn store_batch(&self, ops: &[&WriteOp]) -> Result<Vec<Applied>, StoreError> {
        let done = self
            .metrics
            .timed(Statement::WriteBatch, self.store.write_batch(ops, now_ms()))
            .await?;
        self.metrics.batch(ops.len());
        for (op, applied) in ops.iter().zip(&done) {
            if let (WriteOp::Finish(_), true) = (op, applied.applied) {
                self.metrics.result_stored(applied.requested_ms);
            }
        }
        Ok(done)
    }
}
