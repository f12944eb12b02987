//! The signalling thread: a current-thread tokio runtime on an OS thread of its own, for the
//! SIP signalling hot path (issue 6).
//!
//! The engine puts its UDP readers and writers, transaction shards, media sessions and
//! rtpengine ng clients on it ([`EngineConfig::signalling`]), and with `--redis` the location
//! store's Redis connection and pipelining collector too (session 6,
//! [`DEFAULT_REDIS_ON_SIGNALLING`]: a REGISTER the shard drives then never leaves this thread);
//! the registrar's AOR actors, dialog actors, the dialog store's Redis client, stream
//! connections, admin and cluster layer stay on the node's multi-thread runtime. A call's datagrams and task hops then wake this one thread instead of unparking
//! whichever worker is idle (with two workers a call cost ≈ 28 thread wake-ups, with one ≈ 11;
//! see docs/PERFORMANCE.md), while Redis work still gets the other cores.
//!
//! [`EngineConfig::signalling`]: sipmesh_actors::engine::EngineConfig::signalling

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Whether a node runs its signalling on a thread of its own unless configured otherwise.
pub const DEFAULT_SIGNALLING_THREAD: bool = true;

/// Whether the location store's Redis connection and pipelining run on the signalling thread
/// (with `--redis`) unless configured otherwise (session 6, issue 4; docs/PERFORMANCE.md).
pub const DEFAULT_REDIS_ON_SIGNALLING: bool = true;

/// How long the runtime's blocking work may still run when it stops.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(100);

/// Name of the thread (as `top -H` and `/proc/PID/task/*/comm` show it).
pub const THREAD_NAME: &str = "sipmesh-signal";

/// A running signalling thread. Dropping it (or [`SignallingThread::stop`]) ends the runtime;
/// tasks still on it are dropped with it.
#[derive(Debug)]
pub struct SignallingThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SignallingThread {
    /// Starts the thread and its runtime (timers and I/O enabled).
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || {
                // Runs the spawned tasks until told to stop (or until the sender is dropped);
                // then every task left on it is dropped, on this thread, and blocking work
                // still running (a host-name lookup) gets a moment before it is abandoned.
                let _ = runtime.block_on(stopped);
                runtime.shutdown_timeout(SHUTDOWN_WAIT);
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The runtime's handle, for [`EngineConfig::signalling`].
    ///
    /// [`EngineConfig::signalling`]: sipmesh_actors::engine::EngineConfig::signalling
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the runtime and waits for its thread to end (call it after the engine's shutdown:
    /// the tasks on it are dropped, not drained).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Joining blocks; do it off the async workers.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for SignallingThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_named_thread_and_stop_ends_it() {
        let signalling = SignallingThread::start().expect("thread");
        let name = signalling
            .handle()
            .spawn(async { std::thread::current().name().map(str::to_owned) })
            .await
            .expect("task");
        assert_eq!(name.as_deref(), Some(THREAD_NAME));
        let handle = signalling.handle();
        signalling.stop().await;
        let late = handle.spawn(async {}).await;
        assert!(late.is_err(), "a task spawned after stop does not run");
    }
}
