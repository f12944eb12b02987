//! One integration test's world: its directory, loopback address and node, plus SIPp shortcuts.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::{
    HarnessError, NodeOptions, SipmeshNode, Sipp, SippOutcome, SippTransport, Target, TestDir,
    test_ip,
};

/// A started node for one test, on the test's own loopback address.
#[derive(Debug)]
pub struct Harness {
    /// The node under test (dropped, hence killed, before the directory handle).
    node: SipmeshNode,
    /// Artifacts of this test.
    dir: TestDir,
}

impl Harness {
    /// Starts the target chosen by `SIPMESH_TEST_TARGET` for `test_name` with default options.
    ///
    /// # Panics
    ///
    /// When anything is missing or the node does not come up: the message says what to do.
    pub fn start(binary: &str, test_name: &str) -> Self {
        match Self::try_start(binary, test_name, |_| {}) {
            Ok(harness) => harness,
            Err(e) => panic!("cannot start the node for {test_name}: {e}"),
        }
    }

    /// Like [`Self::start`], letting `configure` adjust the node's options first.
    pub fn try_start(
        binary: &str,
        test_name: &str,
        configure: impl FnOnce(&mut NodeOptions),
    ) -> Result<Self, HarnessError> {
        // Fail early, before any process starts, when SIPp is missing.
        crate::sipp_binary()?;
        let target = Target::from_env()?;
        let dir = TestDir::new(test_name)?;
        let mut options = NodeOptions::on(test_ip(test_name));
        configure(&mut options);
        let node = SipmeshNode::start(Path::new(binary), target, &dir, options)?;
        Ok(Self { node, dir })
    }

    /// Like [`Self::try_start`], with `config_toml` written to `sipmesh.toml` in the test's
    /// directory and passed with `--config` (sipmesh only: Kamailio ignores it).
    pub fn try_start_with_config(
        binary: &str,
        test_name: &str,
        config_toml: &str,
        configure: impl FnOnce(&mut NodeOptions),
    ) -> Result<Self, HarnessError> {
        crate::sipp_binary()?;
        let target = Target::from_env()?;
        let dir = TestDir::new(test_name)?;
        let config = dir.file("sipmesh.toml");
        std::fs::write(&config, config_toml)
            .map_err(|e| HarnessError::io(format!("writing {}", config.display()), e))?;
        let mut options = NodeOptions::on(test_ip(test_name));
        options.config = Some(config);
        configure(&mut options);
        let node = SipmeshNode::start(Path::new(binary), target, &dir, options)?;
        Ok(Self { node, dir })
    }

    /// The node under test.
    pub fn node(&self) -> &SipmeshNode {
        &self.node
    }

    /// The node under test, mutably (for `sigterm`/`wait_exit`).
    pub fn node_mut(&mut self) -> &mut SipmeshNode {
        &mut self.node
    }

    /// This test's artifact directory.
    pub fn dir(&self) -> &TestDir {
        &self.dir
    }

    /// This test's loopback address (the node's and every SIPp instance's).
    pub fn ip(&self) -> IpAddr {
        self.node.ip()
    }

    /// A SIPp client run of `scenario` towards the node over `transport`.
    pub fn uac(&self, scenario: &str, transport: SippTransport) -> Sipp {
        Sipp::new(scenario, &self.dir, self.ip(), transport).remote(self.node.addr(transport))
    }

    /// A SIPp server (UAS) run of `scenario` over `transport`, listening on a free port.
    pub fn uas(&self, scenario: &str, transport: SippTransport) -> Sipp {
        Sipp::new(scenario, &self.dir, self.ip(), transport)
    }

    /// Starts the UAS `scenario` in the background and waits until it listens.
    ///
    /// # Panics
    ///
    /// When SIPp cannot start or does not bind: the message says why.
    pub fn spawn_uas(&self, scenario: &str, transport: SippTransport) -> crate::SippRunning {
        let uas = match self.uas(scenario, transport).spawn() {
            Ok(uas) => uas,
            Err(e) => panic!("cannot start the UAS {scenario}: {e}"),
        };
        if let Err(e) = uas.wait_listening() {
            panic!("UAS {scenario} did not bind: {e}");
        }
        uas
    }

    /// A `register.xml` run binding the user in `field0` of `csv` to `contact`.
    pub fn register(&self, csv: &str, contact: SocketAddr, transport: SippTransport) -> Sipp {
        self.uac("register.xml", transport)
            .inf(csv)
            .key("contact_host", contact.ip())
            .key("contact_port", contact.port())
    }

    /// Panics with the SIPp report and the node's log unless `outcome` succeeded.
    pub fn check(&self, outcome: &SippOutcome) {
        if !outcome.is_success() {
            outcome.assert_success(&format!(
                "artifacts in {}\n--- node log ({}) ---\n{}",
                self.dir.path().display(),
                self.node.log_path().display(),
                self.node.log_tail()
            ));
        }
    }

    /// Runs `sipp` to completion and [`Self::check`]s it.
    pub fn run_ok(&self, sipp: Sipp) -> SippOutcome {
        let outcome = match sipp.run() {
            Ok(outcome) => outcome,
            Err(e) => panic!("cannot run SIPp: {e}"),
        };
        self.check(&outcome);
        outcome
    }
}
