//! The storage thread: appends every write waiting, fsyncs once, confirms the last token
//! (group commit). It holds only the handle that reports writes made durable or failed.

use super::inputs::StorageInputs;
use super::HostCounters;
use crate::wal::Wal;
use concord_core::StorageWrite;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The storage thread: appends every write waiting, fsyncs once, confirms the last token.
pub(super) fn spawn(
    mut wal: Wal,
    inputs: StorageInputs,
    counters: Arc<HostCounters>,
) -> std::io::Result<(std::sync::mpsc::Sender<StorageWrite>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = std::sync::mpsc::channel::<StorageWrite>();
    let thread = std::thread::Builder::new().name("concord-wal".into()).spawn(move || {
        // Ends when the node loop drops its sender, after the last batch is synced.
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let result = batch.iter().try_for_each(|w| wal.append(w)).and_then(|()| {
                let started = std::time::Instant::now();
                let r = wal.sync();
                if let Ok(mut h) = counters.fsync.lock() {
                    h.observe(started.elapsed().as_secs_f64());
                }
                r
            });
            match result {
                Ok(()) => {
                    counters.writes_persisted.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    let last = batch.last().map(|w| w.token);
                    if let Some(token) = last {
                        inputs.persisted(token);
                    }
                }
                Err(e) => {
                    // Nothing more can be made durable: the node must stop.
                    inputs.failed(e.to_string());
                    return;
                }
            }
        }
    })?;
    Ok((tx, thread))
}
