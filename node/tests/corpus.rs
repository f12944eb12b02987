//! The RFC 4475/5118 robustness corpus (`<workspace>/../shared/corpus` or `$SIPMESH_CORPUS`)
//! replayed by its driver against a freshly started node per transport: the driver must exit 0.

use sipmesh_test_support::{CorpusTransport, Harness, run_corpus, test_ip};

/// The binary under test.
const SIPMESH: &str = env!("CARGO_BIN_EXE_sipmesh");

/// Runs `send_corpus.py` over `transport` against a fresh node (with WS, WSS and TLS
/// listeners for those transports).
fn corpus(test: &str, transport: CorpusTransport) {
    let secure = matches!(
        transport,
        CorpusTransport::Ws | CorpusTransport::Wss | CorpusTransport::Tls
    );
    let (harness, listeners) = if secure {
        match Harness::try_start_secure(SIPMESH, test) {
            Ok((h, l)) => (h, Some(l)),
            Err(e) => panic!("cannot start the node for {test}: {e}"),
        }
    } else {
        (Harness::start(SIPMESH, test), None)
    };
    let target = match (transport, &listeners) {
        (CorpusTransport::Ws, Some(l)) => l.ws,
        (CorpusTransport::Wss, Some(l)) => l.wss,
        (CorpusTransport::Tls, Some(l)) => l.tls,
        (CorpusTransport::Tcp, _) => harness.node().tcp_addr(),
        _ => harness.node().udp_addr(),
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

#[test]
fn corpus_ws() {
    corpus("corpus-ws", CorpusTransport::Ws);
}

#[test]
fn corpus_wss() {
    corpus("corpus-wss", CorpusTransport::Wss);
}

#[test]
fn corpus_tls() {
    corpus("corpus-tls", CorpusTransport::Tls);
}
