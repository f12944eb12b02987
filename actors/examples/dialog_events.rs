//! Measures the dialog actors over the memory store: how fast new dialogs are created (each
//! goes through the supervisor, which spawns an actor) and how fast events reach live actors
//! (straight through the sharded map, no supervisor hop).
//!
//! `cargo run --release -p sipmesh-actors --example dialog_events -- [dialogs] [refreshes]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use sipmesh_actors::dialog::{Dialogs, MemoryDialogStore};
use sipmesh_protocol::dialog::{
    DialogConfig, DialogEvent, DialogId, DialogSnapshot, EndReason, InDialogUpdate, Leg,
};
use sipmesh_protocol::message::Method;

fn snapshot(n: usize) -> DialogSnapshot {
    let leg = |tag: &str| Leg {
        uri: format!("sip:{tag}@example.com"),
        tag: tag.to_owned(),
        target: Some(format!("sip:{tag}@10.0.0.1")),
        route_set: vec!["<sip:127.0.0.1;lr>".to_owned()],
        cseq: Some(1),
        flow: None,
        allow: None,
    };
    DialogSnapshot {
        id: DialogId::new(format!("call-{n}"), "a", "b"),
        caller: leg("a"),
        callee: leg("b"),
        session_expires: None,
    }
}

async fn wait_live(dialogs: &Dialogs, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while dialogs.live() != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let refreshes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let store = Arc::new(MemoryDialogStore::new());
    let dialogs = Dialogs::start(store.clone(), DialogConfig::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let t = Instant::now();
    for i in 0..n {
        dialogs.handle(DialogEvent::Confirmed(Box::new(snapshot(i))));
    }
    wait_live(&dialogs, n).await;
    while store.len() < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let created = t.elapsed();
    println!(
        "created {n} dialogs (spawn + store) in {created:?}: {:.0}/s",
        n as f64 / created.as_secs_f64()
    );

    let t = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for r in 0..refreshes {
        for i in 0..n {
            let tx = tx.clone();
            let ev = DialogEvent::Refreshed(Box::new(InDialogUpdate {
                id: DialogId::new(format!("call-{i}"), "a", "b"),
                method: Method::Update,
                cseq: 2 + u32::try_from(r).unwrap_or(0),
                requester_target: None,
                responder_target: None,
                requester_flow: None,
                session_expires: None,
            }));
            dialogs.handle_acked(ev, move |_| {
                let _ = tx.send(());
            });
        }
    }
    for _ in 0..n * refreshes {
        let _ = rx.recv().await;
    }
    let refreshed = t.elapsed();
    println!(
        "{} refreshes to live actors (apply + store) in {refreshed:?}: {:.0}/s",
        n * refreshes,
        (n * refreshes) as f64 / refreshed.as_secs_f64()
    );

    let t = Instant::now();
    for i in 0..n {
        dialogs.handle(DialogEvent::Terminated {
            id: DialogId::new(format!("call-{i}"), "b", "a"),
            reason: EndReason::Bye,
        });
    }
    wait_live(&dialogs, 0).await;
    let ended = t.elapsed();
    println!(
        "ended {n} dialogs in {ended:?}: {:.0}/s (store left: {})",
        n as f64 / ended.as_secs_f64(),
        store.len()
    );
}
