//! The RFC 4475/5118 robustness corpus (`<workspace>/../shared/corpus` or `$SIPMESH_CORPUS`)
//! replayed by its driver against a freshly started node per transport: the driver must exit 0.

use sipmesh_test_support::{CorpusTransport, Harness, run_corpus, test_ip};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// Runs `send_corpus.py` over `transport` against a fresh node.
fn corpus(test: &str, transport: CorpusTransport) {
    let harness = Harness::start(SIPMESH, test);
    let target = match transport {
        CorpusTransport::Udp => harness.node().udp_addr(),
        CorpusTransport::Tcp => harness.node().tcp_addr(),
    };
    // Replies to the corpus's fixed Via ports come back to this address: one per test.
    let source = test_ip(&format!("{test}-source"));
    let outcome = match run_corpus(target, transport, source, harness.dir()) {
        Ok(outcome) => outcome,
        Err(e) => panic!("cannot run the corpus driver: {e}"),
    };
    assert!(
        outcome.status.success() && !outcome.killed,
        "{outcome}\n--- node log ({}) ---\n{}",
        harness.node().log_path().display(),
        harness.node().log_tail()
    );
}

#[test]
fn corpus_udp() {
    corpus("corpus-udp", CorpusTransport::Udp);
}

#[test]
fn corpus_tcp() {
    corpus("corpus-tcp", CorpusTransport::Tcp);
}
