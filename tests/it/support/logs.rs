//! Log capture for one test in a binary that runs many at once.
//!
//! A global subscriber (`set_global_default`) is one per process: in a binary of many suites it
//! would catch every other test's lines too, and a second suite installing one would fail. So a
//! test that reads logs runs on a runtime of its own whose every thread (the caller, the workers,
//! the blocking pool) has the capture as its thread's default subscriber: it sees its own lines
//! and nothing else's, however many tests run beside it. Enough for a test that looks for its
//! own lines (store_faults, panel_client); not for one that must see every line of every crate
//! (no_pin_in_logs, a binary of its own with a global subscriber): beside other tests this
//! capture missed most other crates' lines.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tracing::Dispatch;
use tracing_subscriber::fmt::MakeWriter;

/// Every byte the subscriber writes, shared by its clones.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Runs `test` to its end on a fresh runtime (`workers` threads, or the current thread for 0)
/// whose every thread logs to `dispatch` alone.
pub fn run<F: Future>(dispatch: Dispatch, workers: usize, test: F) -> F::Output {
    let mut builder = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let for_threads = dispatch.clone();
    let rt = builder
        .enable_all()
        .on_thread_start(move || {
            // The runtime's threads end with it, and the guard with them: kept for the thread's
            // life on purpose.
            std::mem::forget(tracing::dispatcher::set_default(&for_threads));
        })
        .build()
        .expect("test runtime");
    tracing::dispatcher::with_default(&dispatch, || rt.block_on(test))
}
