//! Pipelined batches: the hot commands of the location store (the REGISTER script and the
//! lookup `GET`) are queued and sent as one pipeline per batch instead of one request each.
//!
//! One collector task takes whatever is queued (up to [`MAX_BATCH`]), sends it as a single
//! pipeline over the multiplexed connection, and hands each reply to its caller; up to
//! [`MAX_PIPELINES`] batches are in flight, so a slow reply does not stop the next batch. With
//! one caller the batch is one command (no added latency); under load batches fill up. Measured
//! with redis-rs 1.8 on this machine: about 9 µs of client CPU per individually awaited
//! `EVALSHA`, 3 µs per command in pipelines of 64 (docs/PERFORMANCE.md).
//!
//! A command whose script is missing on the server (`NOSCRIPT`, after a Redis restart,
//! `SCRIPT FLUSH` or a Sentinel failover to a replica that never saw it) is retried once on its
//! own after loading the script.
//!
//! With a [`ReplicaWaiter`], a batch holding writes ends with one `WAIT`, which covers every
//! write before it on the connection: the cost is one replica round trip per batch, not per
//! REGISTER; and only one batch is in flight at a time.

use std::sync::Arc;

use ::redis::{Cmd, ErrorKind, RedisError, RedisResult, Value};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::library::RegisterScript;
use crate::redis_endpoint::{RedisEndpoint, ReplicaWaiter};

/// Most commands in one pipeline.
pub(super) const MAX_BATCH: usize = 128;

/// Most pipelines awaiting their replies at once.
const MAX_PIPELINES: usize = 4;

/// One queued command.
struct Job {
    cmd: Cmd,
    /// The script the command runs, to load it (or its library) when the server lacks it.
    script: Option<Arc<RegisterScript>>,
    /// A write that a configured `WAIT` must cover.
    write: bool,
    reply: oneshot::Sender<RedisResult<Value>>,
}

/// The collector is gone (the store is shutting down): the command was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Closed;

/// The queue in front of the collector task. Cheap to clone.
#[derive(Clone)]
pub(super) struct Batcher {
    tx: mpsc::Sender<Job>,
}

impl Batcher {
    /// Starts the collector over `conn` with room for `capacity` queued commands. Must be called
    /// inside a Tokio runtime.
    pub(super) fn spawn(
        conn: RedisEndpoint,
        capacity: usize,
        replica_wait: Option<ReplicaWaiter>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(collect(conn, rx, replica_wait));
        Self { tx }
    }

    /// Queues `cmd` and waits for its reply. The caller bounds the whole wait, queueing
    /// included; a command whose caller gave up before its batch left is not sent at all.
    pub(super) async fn query(
        &self,
        cmd: Cmd,
        script: Option<Arc<RegisterScript>>,
        write: bool,
    ) -> Result<RedisResult<Value>, Closed> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                cmd,
                script,
                write,
                reply,
            })
            .await
            .map_err(|_| Closed)?;
        rx.await.map_err(|_| Closed)
    }
}

async fn collect(
    conn: RedisEndpoint,
    mut rx: mpsc::Receiver<Job>,
    replica_wait: Option<ReplicaWaiter>,
) {
    // With WAIT, one pipeline at a time: WAIT blocks the connection on the server, so WAITs
    // queued behind a slow one would add up (measured: 5 × the WAIT timeout with the replica
    // gone), and the degraded switch could not act before they were all sent.
    let pipelines = if replica_wait.is_some() {
        1
    } else {
        MAX_PIPELINES
    };
    let in_flight = Arc::new(Semaphore::new(pipelines));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        // Taken after the permit: while every pipeline is busy, the queue keeps filling and
        // the next batch is larger.
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let conn = conn.clone();
        let replica_wait = replica_wait.clone();
        tokio::spawn(async move {
            run(conn, jobs, replica_wait).await;
            drop(permit);
        });
    }
}

/// Sends `jobs` as one pipeline (ended by `WAIT` when configured and a job writes) and answers
/// each.
async fn run(mut conn: RedisEndpoint, mut jobs: Vec<Job>, replica_wait: Option<ReplicaWaiter>) {
    // A caller that timed out already answered 503: applying its REGISTER now would only
    // surprise it.
    jobs.retain(|job| !job.reply.is_closed());
    if jobs.is_empty() {
        return;
    }
    let wait = replica_wait
        .filter(|_| jobs.iter().any(|job| job.write))
        .and_then(|w| w.due().map(|cmd| (w, cmd)));
    if let ([_], None) = (jobs.as_slice(), &wait) {
        for mut job in jobs {
            let cmd = std::mem::replace(&mut job.cmd, Cmd::new());
            let result = cmd.query_async::<Value>(&mut conn).await;
            finish(&mut conn, job, &cmd, result, None).await;
        }
        return;
    }
    // The commands move into the pipeline (no copy per command); a NOSCRIPT retry reads its
    // command back from there.
    let mut pipe = ::redis::pipe();
    pipe.ignore_errors();
    for job in &mut jobs {
        pipe.add_command(std::mem::replace(&mut job.cmd, Cmd::new()));
    }
    if let Some((_, cmd)) = &wait {
        pipe.add_command(cmd.clone());
    }
    let expected = jobs.len() + usize::from(wait.is_some());
    match pipe.query_async::<Vec<RedisResult<Value>>>(&mut conn).await {
        Ok(mut results) if results.len() == expected => {
            if let Some((waiter, _)) = &wait
                && let Some(reply) = results.pop()
            {
                waiter.check(&reply);
            }
            let waiter = wait.map(|(w, _)| w);
            for ((job, cmd), result) in jobs.into_iter().zip(pipe.cmd_iter()).zip(results) {
                finish(&mut conn, job, cmd, result, waiter.as_ref()).await;
            }
        }
        Ok(results) => {
            let e = RedisError::from((
                ErrorKind::Client,
                "pipeline reply count mismatch",
                format!("{} replies for {expected} commands", results.len()),
            ));
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Answers `job` with `result`, after loading its script and retrying once on `NOSCRIPT` (and
/// waiting for replicas after a retried write, when `wait` is set).
async fn finish(
    conn: &mut RedisEndpoint,
    job: Job,
    cmd: &Cmd,
    result: RedisResult<Value>,
    wait: Option<&ReplicaWaiter>,
) {
    let result = match (result, &job.script) {
        (Err(e), Some(script)) => match script.recover(conn, cmd, &e).await {
            Some(Ok(retry)) => {
                let retried = retry.query_async::<Value>(conn).await;
                if let Some(waiter) = wait.filter(|_| job.write && retried.is_ok())
                    && let Some(cmd) = waiter.due()
                {
                    waiter.check(&cmd.query_async::<Value>(conn).await);
                }
                retried
            }
            Some(Err(load)) => Err(load),
            None => Err(e),
        },
        (result, _) => result,
    };
    let _ = job.reply.send(result);
}
