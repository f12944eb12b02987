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
//! The REGISTERs of one batch go as **one** call of the several-AORs function
//! (`register_many.lua`, [`SingleRegister::many`]) in place of the first of them: a call's fixed
//! cost on the server (~21,500 instructions, docs/REDIS.md "Script cost") is paid once per batch
//! instead of once per REGISTER. They stay in queue order (two REGISTERs for one AOR both apply,
//! in order), the fence is checked once per call (REGISTERs with another lease check start a new
//! call), and each gets its own reply. A batch with one REGISTER calls the one-AOR function.
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

use super::register_call::{self, RegisterCall, SingleRegister};
use crate::redis_endpoint::{RedisEndpoint, ReplicaWaiter};

/// Most commands in one pipeline.
pub(super) const MAX_BATCH: usize = 128;

/// Most pipelines awaiting their replies at once.
const MAX_PIPELINES: usize = 4;

/// What a caller queues.
pub(super) enum Request {
    /// A plain command (no script).
    Cmd(Cmd),
    /// A REGISTER: the register script, alone or with the batch's other REGISTERs.
    Register(RegisterCall),
}

/// One queued request.
struct Job {
    request: Request,
    /// A write that a configured `WAIT` must cover.
    write: bool,
    reply: oneshot::Sender<RedisResult<Value>>,
}

/// One command of a pipeline and the jobs it answers.
enum Unit {
    /// One job: a plain command, or a REGISTER as a one-AOR call.
    One(Job),
    /// REGISTERs sharing one lease check, as one several-AORs call (in queue order).
    Many(Vec<Job>),
}

impl Unit {
    fn write(&self) -> bool {
        match self {
            Self::One(job) => job.write,
            Self::Many(_) => true,
        }
    }
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
    /// Starts the collector over `conn` with room for `capacity` queued commands; REGISTERs
    /// are built for `register`. Must be called inside a Tokio runtime.
    pub(super) fn spawn(
        conn: RedisEndpoint,
        capacity: usize,
        replica_wait: Option<ReplicaWaiter>,
        register: Arc<SingleRegister>,
    ) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(collect(conn, rx, replica_wait, register));
        Self { tx }
    }

    /// Queues `request` and waits for its reply. The caller bounds the whole wait, queueing
    /// included; a request whose caller gave up before its batch left is not sent at all.
    pub(super) async fn query(
        &self,
        request: Request,
        write: bool,
    ) -> Result<RedisResult<Value>, Closed> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                request,
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
    register: Arc<SingleRegister>,
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
        let register = Arc::clone(&register);
        tokio::spawn(async move {
            run(conn, jobs, replica_wait, &register).await;
            drop(permit);
        });
    }
}

/// Groups `jobs` into pipeline units: each run of REGISTERs with the same lease check (other
/// commands in between do not end it) becomes one several-AORs call at the place of its first
/// REGISTER; a run of one stays a one-AOR call.
fn group(jobs: Vec<Job>, register: &SingleRegister) -> Vec<(Unit, Cmd)> {
    let mut units: Vec<Unit> = Vec::with_capacity(jobs.len());
    let mut open: Option<usize> = None;
    for job in jobs {
        if let Request::Register(call) = &job.request {
            if let Some(Unit::Many(run)) = open.and_then(|i| units.get_mut(i))
                && run.first().is_some_and(|first| same_fence(first, call))
            {
                run.push(job);
                continue;
            }
            open = Some(units.len());
            units.push(Unit::Many(vec![job]));
        } else {
            units.push(Unit::One(job));
        }
    }
    let mut out = Vec::with_capacity(units.len());
    for unit in units {
        match unit {
            Unit::Many(mut run) if run.len() == 1 => {
                if let Some(job) = run.pop() {
                    push_one(&mut out, job, register);
                }
            }
            Unit::Many(run) => {
                let calls = run.iter().filter_map(|job| match &job.request {
                    Request::Register(call) => Some(call),
                    Request::Cmd(_) => None,
                });
                let fence = calls.clone().next().and_then(|c| c.fence.clone());
                match register.many(calls, fence.as_ref()) {
                    Some(cmd) => out.push((Unit::Many(run), cmd)),
                    None => {
                        for job in run {
                            push_one(&mut out, job, register);
                        }
                    }
                }
            }
            Unit::One(job) => push_one(&mut out, job, register),
        }
    }
    out
}

fn push_one(out: &mut Vec<(Unit, Cmd)>, mut job: Job, register: &SingleRegister) {
    let cmd = match &mut job.request {
        Request::Cmd(cmd) => std::mem::replace(cmd, Cmd::new()),
        Request::Register(call) => register.one(call),
    };
    out.push((Unit::One(job), cmd));
}

/// Whether `job` is a REGISTER with the same lease check as `call`.
fn same_fence(job: &Job, call: &RegisterCall) -> bool {
    matches!(&job.request, Request::Register(first) if first.fence == call.fence)
}

/// Sends `jobs` as one pipeline (ended by `WAIT` when configured and a job writes) and answers
/// each.
async fn run(
    mut conn: RedisEndpoint,
    mut jobs: Vec<Job>,
    replica_wait: Option<ReplicaWaiter>,
    register: &SingleRegister,
) {
    // A caller that timed out already answered 503: applying its REGISTER now would only
    // surprise it.
    jobs.retain(|job| !job.reply.is_closed());
    if jobs.is_empty() {
        return;
    }
    let wait = replica_wait
        .filter(|_| jobs.iter().any(|job| job.write))
        .and_then(|w| w.due().map(|cmd| (w, cmd)));
    let units = group(jobs, register);
    if let ([_], None) = (units.as_slice(), &wait) {
        for (unit, cmd) in units {
            let result = cmd.query_async::<Value>(&mut conn).await;
            finish(&mut conn, register, unit, &cmd, result, None).await;
        }
        return;
    }
    // The commands move into the pipeline (no copy per command); a NOSCRIPT retry reads its
    // command back from there.
    let mut pipe = ::redis::pipe();
    pipe.ignore_errors();
    let mut answer = Vec::with_capacity(units.len());
    for (unit, cmd) in units {
        pipe.add_command(cmd);
        answer.push(unit);
    }
    if let Some((_, cmd)) = &wait {
        pipe.add_command(cmd.clone());
    }
    let expected = answer.len() + usize::from(wait.is_some());
    match pipe.query_async::<Vec<RedisResult<Value>>>(&mut conn).await {
        Ok(mut results) if results.len() == expected => {
            if let Some((waiter, _)) = &wait
                && let Some(reply) = results.pop()
            {
                waiter.check(&reply);
            }
            let waiter = wait.map(|(w, _)| w);
            for ((unit, cmd), result) in answer.into_iter().zip(pipe.cmd_iter()).zip(results) {
                finish(&mut conn, register, unit, cmd, result, waiter.as_ref()).await;
            }
        }
        Ok(results) => {
            let e = RedisError::from((
                ErrorKind::Client,
                "pipeline reply count mismatch",
                format!("{} replies for {expected} commands", results.len()),
            ));
            for unit in answer {
                fail(unit, &e);
            }
        }
        Err(e) => {
            for unit in answer {
                fail(unit, &e);
            }
        }
    }
}

fn fail(unit: Unit, e: &RedisError) {
    match unit {
        Unit::One(job) => {
            let _ = job.reply.send(Err(e.clone()));
        }
        Unit::Many(jobs) => {
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

/// Answers `unit` with `result`, after loading the register script and retrying once on
/// `NOSCRIPT` (and waiting for replicas after a retried write, when `wait` is set).
async fn finish(
    conn: &mut RedisEndpoint,
    register: &SingleRegister,
    unit: Unit,
    cmd: &Cmd,
    result: RedisResult<Value>,
    wait: Option<&ReplicaWaiter>,
) {
    let scripted = match &unit {
        Unit::One(job) => matches!(job.request, Request::Register(_)),
        Unit::Many(_) => true,
    };
    let result = match result {
        Err(e) if scripted => match register.script.recover(conn, cmd, &e).await {
            Some(Ok(retry)) => {
                let retried = retry.query_async::<Value>(conn).await;
                if let Some(waiter) = wait.filter(|_| unit.write() && retried.is_ok())
                    && let Some(cmd) = waiter.due()
                {
                    waiter.check(&cmd.query_async::<Value>(conn).await);
                }
                retried
            }
            Some(Err(load)) => Err(load),
            None => Err(e),
        },
        result => result,
    };
    match unit {
        Unit::One(job) => {
            let _ = job.reply.send(result);
        }
        Unit::Many(jobs) => {
            let replies = register_call::split(result, jobs.len());
            for (job, reply) in jobs.into_iter().zip(replies) {
                let _ = job.reply.send(reply);
            }
        }
    }
}
