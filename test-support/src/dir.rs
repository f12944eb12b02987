//! Per-test artifact directories under `target/sipmesh-tests/`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{HarnessError, workspace_root};

/// A directory for one test's logs, traces and generated configs.
///
/// It lives under `<workspace>/target/sipmesh-tests/<name>`; it is emptied when created and
/// kept afterwards so a failing run can be inspected (its path is in every failure message).
#[derive(Debug, Clone)]
pub struct TestDir {
    /// The directory.
    path: PathBuf,
}

impl TestDir {
    /// Creates (or empties) the directory for `test_name`.
    pub fn new(test_name: &str) -> Result<Self, HarnessError> {
        let safe: String = test_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| workspace_root().join("target"), PathBuf::from);
        let path = target.join("sipmesh-tests").join(safe);
        kill_leftovers(&path);
        if path.exists() {
            fs::remove_dir_all(&path)
                .map_err(|e| HarnessError::io(format!("emptying {}", path.display()), e))?;
        }
        fs::create_dir_all(&path)
            .map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))?;
        Ok(Self { path })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file name inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// Kills processes left behind by an earlier, killed run of the same test.
///
/// `setpriv --pdeathsig` covers the processes the harness starts, but not Kamailio's workers
/// (forked by Kamailio). Such orphans keep the test's address and port busy; they are recognised
/// by their command line naming a file inside this test's own directory, which only this
/// harness creates, and are killed by pid.
fn kill_leftovers(dir: &Path) {
    let Some(marker) = dir.to_str().map(|d| format!("{d}/")) else {
        return;
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id().to_string();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&marker) {
            let _ = std::process::Command::new("/usr/bin/kill")
                .args(["-KILL", pid])
                .status();
        }
    }
}
