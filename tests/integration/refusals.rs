//! Who a replicated cluster refuses, each with a log line and a non-zero exit (real processes
//! on loopback): a node whose data directory belongs to another cluster, a node whose cookie
//! differs, and a second live node with a member's name (last: ractor_cluster's name clash
//! on disconnect, see the notes, may disturb the member it copied).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::support::{free_addr, retry, TestApp};

const COOKIE: &str = "refusal-test";
/// How long a refused node may take to stop: the cookie case waits out the 10 s the joining
/// node gives refused sessions.
const STOPS_WITHIN: Duration = Duration::from_secs(40);

/// Starts `node` of a replicated cluster on `data`, listening on `cluster`, joining `seed`
/// unless it founds the cluster, with `cookie`; returns once it printed its addresses.
fn start(node: &str, data: &Path, cluster: &str, seed: Option<&str>, cookie: &str) -> TestApp {
    let mut env = vec![
        ("AGORA_NODE", node.to_owned()),
        ("AGORA_CLUSTER", cluster.to_owned()),
        ("AGORA_COOKIE", cookie.to_owned()),
        ("AGORA_PARTITIONS", "2".to_owned()),
        ("RUST_LOG", "warn,agora::cluster=info".to_owned()),
    ];
    if let Some(seed) = seed {
        env.push(("AGORA_JOIN", seed.to_owned()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestApp::spawn_process_printed(data, &env)
}

/// Waits until `app`'s cluster lists `members` members and every partition has a leader.
async fn wait_for_members(app: &TestApp, members: usize) {
    retry(
        Duration::from_millis(100),
        Duration::from_secs(30),
        || async {
            let view: Value = app.json("/cluster").await;
            let listed = view["members"].as_array().map_or(0, Vec::len);
            let led = (view["partitions"].as_array())
                .is_some_and(|ps| ps.iter().all(|p| p["leader"].is_string()));
            match listed == members && led {
                true => Ok(()),
                false => Err(format!("cluster not formed yet: {view}")),
            }
        },
    )
    .await;
}

/// `app` stops by itself with a failure, and logged `why`.
async fn refused(mut app: TestApp, why: &str) {
    let Some(status) = app.exit_within(STOPS_WITHIN).await else {
        let lines = app.last_lines(20).join("\n");
        panic!("a node that should be refused ({why}) still runs; it printed:\n{lines}");
    };
    assert!(
        !status.success(),
        "a refused node exits with a failure, not {status}"
    );
    // The reader of its output may still be reading its last lines.
    retry(
        Duration::from_millis(50),
        Duration::from_secs(5),
        || async {
            match app.logged(why) {
                true => Ok(()),
                false => Err(format!("no log line says {why:?}: {:?}", app.last_lines(5))),
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_cluster_refuses_a_second_name_a_wrong_cookie_and_another_clusters_data() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let seed = free_addr().to_string();
    let n1 = start("n1", dirs[0].path(), &seed, None, COOKIE);
    wait_for_members(&n1, 1).await;

    // m1 founds a cluster of its own on dirs[2], then tries to join n1's with that data.
    let m1_addr = free_addr().to_string();
    let m1 = start("m1", dirs[2].path(), &m1_addr, None, COOKIE);
    wait_for_members(&m1, 1).await;
    m1.kill9();
    let moved_addr = free_addr().to_string();
    let moved = start("m1", dirs[2].path(), &moved_addr, Some(&seed), COOKIE);
    refused(moved, "belongs to").await;

    // A second process named n1, with a data directory of its own.
    let twin = start(
        "n1",
        dirs[1].path(),
        &free_addr().to_string(),
        Some(&seed),
        COOKIE,
    );
    refused(twin, "a live node named n1 is already in the cluster").await;

    let stranger = start(
        "n2",
        dirs[1].path(),
        &free_addr().to_string(),
        Some(&seed),
        "wrong",
    );
    refused(stranger, "the cookies differ").await;

    // n1 went on serving alone through all of it.
    wait_for_members(&n1, 1).await;
}
