//! The admin view counts every kind of actor a member runs (issue 5, point 5): two TCP users
//! registered at node1 of three real `sipmesh` processes show up, in node2's `GET /cluster`
//! and `sipmesh cluster status`, as node1's AOR actors and stream connections (published
//! through Redis), and `owned_actors` is the sum of the kinds.

mod cluster_support;

use std::process::Command;
use std::time::Duration;

use cluster_support::{Cluster, IDS, all_live, member, register_tcp};

const WAIT: Duration = Duration::from_secs(3);

/// node `viewer`'s counts of member `id`: (aors, dialogs, media_sessions, connections, total).
fn counts(c: &Cluster, viewer: usize, id: &str) -> Option<(u64, u64, u64, u64, u64)> {
    let view = c.view(viewer)?;
    let m = member(&view, id)?;
    let a = &m["actors"];
    Some((
        a["aors"].as_u64()?,
        a["dialogs"].as_u64()?,
        a["media_sessions"].as_u64()?,
        a["connections"].as_u64()?,
        m["owned_actors"].as_u64()?,
    ))
}

#[test]
fn every_member_sees_each_members_aor_actors_and_connections() {
    let c = Cluster::start("cluster-counts", 3);
    c.wait("a full live mesh", Duration::from_secs(10), |c| {
        all_live(c, &IDS)
    });
    let _bob = register_tcp(&c, 0, "bob", 1, "counts-bob", WAIT);
    let _carol = register_tcp(&c, 0, "carol", 1, "counts-carol", WAIT);

    // node1 counts itself live; node2 and node3 see its published counts within ~1 s.
    let took = c.wait("node1's counts seen by every member", WAIT, |c| {
        (0..3).all(|i| {
            counts(c, i, "node1").is_some_and(|(aors, d, m, conns, total)| {
                aors >= 2 && conns == 2 && total == aors + d + m + conns
            })
        })
    });
    eprintln!(
        "measured: node1's two connections and AOR actors seen by its peers {took:?} after the REGISTERs"
    );
    for (viewer, id) in [(0, "node2"), (0, "node3"), (1, "node3")] {
        let (_, _, _, conns, _) = counts(&c, viewer, id).expect("counts of a peer");
        assert_eq!(conns, 0, "{id} holds no connection");
    }

    // The CLI shows the same, one column per kind.
    let admin = format!(
        "{}:{}",
        c.nodes[1].ip(),
        c.nodes[1].options().admin_port.expect("admin port")
    );
    let out = Command::new(cluster_support::SIPMESH)
        .args(["cluster", "status", "--admin", &admin])
        .output()
        .expect("running sipmesh cluster status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header.get(7..),
        Some(&["AORS", "DIALOGS", "MEDIA", "CONNS", "ACTORS"][..]),
        "{text}"
    );
    let node1: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("node1 "))
        .unwrap_or_else(|| panic!("no node1 row in\n{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(node1.get(10), Some(&"2"), "CONNS of node1 in\n{text}");
}
