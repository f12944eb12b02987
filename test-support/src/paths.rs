//! Where the harness finds the workspace, the SIPp scenarios, the corpus and the tools.

use std::env;
use std::path::{Path, PathBuf};

use crate::HarnessError;

/// The Cargo workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// `tests/sipp/`: the SIPp XML scenarios and CSV injection files.
pub fn sipp_dir() -> PathBuf {
    workspace_root().join("tests").join("sipp")
}

/// `tests/kamailio/proxy.cfg`: the reference proxy used with `SIPMESH_TEST_TARGET=kamailio`.
pub fn kamailio_config() -> PathBuf {
    workspace_root()
        .join("tests")
        .join("kamailio")
        .join("proxy.cfg")
}

/// The RFC corpus: `$SIPMESH_CORPUS`, else `<workspace root>/../shared/corpus`.
///
/// Fails (never skips) when the directory or its `send_corpus.py` is missing.
pub fn corpus_dir() -> Result<PathBuf, HarnessError> {
    let dir = match env::var_os("SIPMESH_CORPUS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("..").join("shared").join("corpus"),
    };
    if dir.join("send_corpus.py").is_file() {
        Ok(dir)
    } else {
        Err(HarnessError::CorpusMissing(dir))
    }
}

/// The `sipp` executable found on `PATH`.
pub fn sipp_binary() -> Result<PathBuf, HarnessError> {
    which("sipp").ok_or(HarnessError::SippMissing)
}

/// The `kamailio` executable found on `PATH` (or in `/usr/sbin`, which `PATH` may lack).
pub(crate) fn kamailio_binary() -> Result<PathBuf, HarnessError> {
    which("kamailio")
        .or_else(|| {
            let sbin = PathBuf::from("/usr/sbin/kamailio");
            sbin.is_file().then_some(sbin)
        })
        .ok_or(HarnessError::KamailioMissing)
}

/// The SIPp with TLS (`-t l1`): `$SIPMESH_SIPP_TLS`, else
/// `<workspace>/target/tools/sipp-tls/sipp` as installed by `scripts/build-sipp-tls.sh`.
///
/// Fails (never skips) when neither exists.
pub fn sipp_tls_binary() -> Result<PathBuf, HarnessError> {
    let path = match env::var_os("SIPMESH_SIPP_TLS") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => workspace_root()
            .join("target")
            .join("tools")
            .join("sipp-tls")
            .join("sipp"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::SippTlsMissing(path))
    }
}

/// Looks `name` up in the directories of `PATH`, like `which`.
fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
