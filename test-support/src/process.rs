//! Child-process helpers: bounded waits, signals by process group, log tails.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How often a bounded wait polls the child.
const POLL: Duration = Duration::from_millis(20);

/// Where procps's `kill` lives on Debian (a shell's builtin is not reachable from `Command`).
const KILL: &str = "/usr/bin/kill";

/// Where util-linux's `setpriv` lives on Debian.
const SETPRIV: &str = "/usr/bin/setpriv";

/// A command for `program` that dies with the test process.
///
/// When `setpriv` is available the program is started as `setpriv --pdeathsig KILL -- program`
/// (it `exec`s, so the pid is the program's): if the test process is killed (e.g. by a nextest
/// timeout) before its `Drop` impls run, the kernel kills the node or SIPp instead of leaving it
/// bound to its ports. Without `setpriv` the program is started directly.
pub(crate) fn command(program: &Path) -> Command {
    if Path::new(SETPRIV).is_file() {
        let mut command = Command::new(SETPRIV);
        command.args(["--pdeathsig", "KILL", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Waits for `child` for at most `limit`; `None` when it is still running.
pub(crate) fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(POLL),
            Ok(None) | Err(_) => return None,
        }
    }
}

/// Sends `signal` (`TERM`, `KILL`, ...) to the process group led by `child`.
///
/// Children are spawned as group leaders (`process_group(0)`), so this reaches Kamailio's
/// worker processes too and nothing outside what the test started. Uses `kill(1)` to keep the
/// crate free of `unsafe`.
pub(crate) fn signal_group(child: &Child, signal: &str) {
    let group = format!("-{}", child.id());
    // A failure means the group is already gone, which is what we want anyway.
    let kill = if Path::new(KILL).is_file() {
        KILL
    } else {
        "kill"
    };
    let _ = Command::new(kill)
        .args([&format!("-{signal}"), "--", &group])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits until every thread of process `pid` is stopped (state `T` in
/// `/proc/<pid>/task/*/stat`), at most `limit`; true when they are.
///
/// `kill -STOP` returns once the signal is queued; the threads stop when they next leave the
/// kernel. On a loaded machine a request sent right after could still be served by a thread
/// that had not stopped yet (seen with rtpengine: an offer answered 8 ms "into" a freeze), so a
/// freeze waits for the stop to be real.
pub(crate) fn wait_stopped(pid: u32, limit: Duration) -> bool {
    let started = Instant::now();
    loop {
        if all_threads_stopped(pid) {
            return true;
        }
        if started.elapsed() > limit {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Whether `/proc/<pid>/task` lists threads and each one's state is `T` (stopped) or `t`.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let mut any = false;
    for task in tasks.flatten() {
        let Ok(stat) = fs::read_to_string(task.path().join("stat")) else {
            return false;
        };
        // The state follows the parenthesised command name, which may itself hold spaces.
        let state = stat
            .rfind(')')
            .and_then(|end| stat.get(end + 1..))
            .and_then(|rest| rest.split_whitespace().next());
        if !matches!(state, Some("T" | "t")) {
            return false;
        }
        any = true;
    }
    any
}

/// Stops `child` and its group: SIGTERM, a short grace period, then SIGKILL; reaps it.
pub(crate) fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        signal_group(child, "KILL");
        return;
    }
    signal_group(child, "TERM");
    if wait_timeout(child, Duration::from_secs(2)).is_none() {
        signal_group(child, "KILL");
        let _ = child.kill();
        let _ = wait_timeout(child, Duration::from_secs(2));
    }
    // Workers that outlived their leader (Kamailio) go too.
    signal_group(child, "KILL");
}

/// The last `max` bytes of a text file (lossy UTF-8), or a note when it cannot be read.
pub(crate) fn tail(path: &Path, max: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            let text = String::from_utf8_lossy(bytes.get(start..).unwrap_or_default());
            if start > 0 {
                format!("[... {start} bytes elided ...]\n{text}")
            } else {
                text.into()
            }
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}
