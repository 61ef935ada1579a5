//! Tests of the partition and meta state machines: what a snapshot holds, that installing it
//! elsewhere reproduces it, and what survives a reopen.

use std::collections::BTreeMap;
use std::path::Path;

use openraft::storage::RaftStateMachine;
use openraft::testing::log_id;
use openraft::{EntryPayload, RaftSnapshotBuilder};
use tempfile::TempDir;
use tokio::sync::watch;

use super::super::types::Flush;
use super::*;
use crate::domain::{
    Description, EventType, Order, OrderEvent, Price, Product, ProductName, StockLevel,
};
use crate::storage::{Batch, Rows};

const PARTITIONS: u32 = 4;
/// Not 0: a node alone keys its events from 0 up, which is group 0's range.
const GROUP: GroupId = 1;

fn open(dir: &Path) -> Storage {
    Storage::open(dir).unwrap()
}

fn machine(storage: &Storage, group: GroupId) -> (Machine, watch::Receiver<Members>) {
    let (tx, rx) = watch::channel(Members::new());
    (
        Machine::open(storage.clone(), group, PARTITIONS, tx).unwrap(),
        rx,
    )
}

fn normal(index: u64, proposal: Proposal) -> Entry {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(proposal),
    }
}

/// The first SKU from `from` on whose product, stock and order keys are all in `partition`.
fn sku_in(partition: u32, from: &mut u32) -> Sku {
    loop {
        *from += 1;
        let sku = Sku::parse(&format!("sku-{from}")).unwrap();
        let id = ProductId::for_sku(&sku).to_string();
        if partition_of(sku.as_str(), PARTITIONS) == partition
            && partition_of(&id, PARTITIONS) == partition
        {
            return sku;
        }
    }
}

fn order_in(partition: u32) -> Order {
    loop {
        let number = OrderNumber::new();
        if partition_of(&number.to_string(), PARTITIONS) == partition {
            return crate::test_support::empty_order(number);
        }
    }
}

/// A batch that writes a row of every table in `partition`, and an event.
fn batch_in(storage: &Storage, partition: u32, from: &mut u32) -> Batch {
    let sku = sku_in(partition, from);
    let product = Product {
        id: ProductId::for_sku(&sku),
        sku: sku.clone(),
        name: ProductName::parse("a case").unwrap(),
        description: Description::parse("it holds things").unwrap(),
        price: Price::from_cents(250).unwrap(),
    };
    let level = StockLevel {
        sku: sku.clone(),
        quantity: 3,
        pending: BTreeMap::new(),
    };
    let order = order_in(partition);
    let seen = loop {
        *from += 1;
        let id = format!("event-{from}");
        if partition_of(&id, PARTITIONS) == partition {
            break id;
        }
    };
    let mut batch = Batch::default();
    storage
        .products
        .stage(&mut batch, &product.id, &product)
        .unwrap();
    storage.stock.stage(&mut batch, &sku, &level).unwrap();
    storage
        .orders
        .stage(&mut batch, &order.number, &order)
        .unwrap();
    storage.seen_events.stage(&mut batch, &seen, &7).unwrap();
    batch
        .event(&OrderEvent::for_order(&order, EventType::OrderPlaced, 0))
        .unwrap();
    batch
}

/// Every row of every table that `partition` owns.
fn rows(storage: &Storage, partition: u32) -> Vec<(TableId, Rows)> {
    TableId::ALL
        .into_iter()
        .map(|table| {
            let keep = |key: &[u8]| belongs(partition, PARTITIONS, table, key);
            (table, storage.rows_of(table, keep).unwrap())
        })
        .collect()
}

/// Writes two batches of `GROUP` through its machine, and rows of the other partitions and of
/// a node alone around them.
async fn fill(storage: &Storage, machine: &mut Machine, from: &mut u32) {
    for partition in (0..PARTITIONS).filter(|p| *p != GROUP) {
        let batch = batch_in(storage, partition, from);
        storage.apply_committed(partition, 1, &batch).unwrap();
    }
    storage.apply(batch_in(storage, 0, from)).unwrap();
    let entries = [
        normal(
            1,
            Proposal::Writes(batch_in(storage, GROUP, from), Flush::OnAppend),
        ),
        normal(
            2,
            Proposal::WritesOfTerm {
                batch: batch_in(storage, GROUP, from),
                flush: Flush::OnAppend,
                term: 1,
            },
        ),
    ];
    let replies = machine.apply(entries).await.unwrap();
    assert_eq!(replies.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 2]);
}

#[tokio::test]
async fn writes_decided_in_another_term_are_skipped() {
    let dir = TempDir::new().unwrap();
    let storage = open(dir.path());
    let (mut machine, _) = machine(&storage, GROUP);
    let mut from = 0;
    let mut of_term = |term| Proposal::WritesOfTerm {
        batch: batch_in(&storage, GROUP, &mut from),
        flush: Flush::OnAppend,
        term,
    };
    // The entries are of term 1 (`normal`): one decided in term 1, one in term 2.
    let entries = [normal(1, of_term(1)), normal(2, of_term(2))];
    let replies = machine.apply(entries).await.unwrap();
    let fenced: Vec<bool> = replies.iter().map(|r| r.fenced).collect();
    assert_eq!(fenced, [false, true]);
    let orders = storage.orders.scan(None, 10).unwrap();
    assert_eq!(
        orders.len(),
        1,
        "only the batch of the entry's own term applied"
    );
    assert_eq!(
        machine.applied,
        Some(log_id(1, 1, 2)),
        "the skipped entry counts as applied"
    );
}

/// Two databases: `a` with a partition machine filled and its snapshot built, `b` empty.
struct Pair {
    a: Storage,
    b: Storage,
    from: u32,
    source: Machine,
    snapshot: Snapshot<Raft>,
    _dirs: (TempDir, TempDir),
}

impl Pair {
    async fn filled() -> Pair {
        let _dirs = (TempDir::new().unwrap(), TempDir::new().unwrap());
        let (a, b) = (open(_dirs.0.path()), open(_dirs.1.path()));
        let mut from = 0;
        let (mut source, _) = machine(&a, GROUP);
        fill(&a, &mut source, &mut from).await;
        let snapshot = (source.get_snapshot_builder().await)
            .build_snapshot()
            .await
            .unwrap();
        Pair {
            a,
            b,
            from,
            source,
            snapshot,
            _dirs,
        }
    }
}

#[tokio::test]
async fn a_partition_snapshot_holds_its_rows_only_and_installs_them_elsewhere() {
    let Pair {
        a,
        b,
        mut from,
        mut source,
        snapshot,
        _dirs,
    } = Pair::filled().await;
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 1, 2)));
    let pieces = split_pieces(snapshot.snapshot.get_ref()).unwrap();
    // Two batches of a row in each of four tables and an event.
    assert_eq!(pieces.len(), 10);
    for piece in &pieces {
        let Piece::Row { table, key, .. } = piece else {
            panic!("{piece:?} in a partition's snapshot");
        };
        assert!(belongs(GROUP, PARTITIONS, *table, key), "{piece:?}");
    }
    let current = source.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snapshot.meta);

    // The follower has rows of other partitions, which stay, and stale rows of this one.
    let (mut follower, _) = machine(&b, GROUP);
    fill(&b, &mut follower, &mut from).await;
    let others: Vec<_> = (0..PARTITIONS)
        .filter(|p| *p != GROUP)
        .map(|p| rows(&b, p))
        .collect();
    follower
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap();

    assert_eq!(rows(&b, GROUP), rows(&a, GROUP));
    let after: Vec<_> = (0..PARTITIONS)
        .filter(|p| *p != GROUP)
        .map(|p| rows(&b, p))
        .collect();
    assert_eq!(after, others);
    assert_eq!(
        follower.applied_state().await.unwrap(),
        source.applied_state().await.unwrap()
    );

    // Reopened, the follower has the same applied state and still serves the snapshot.
    drop(follower);
    let (mut reopened, _) = machine(&b, GROUP);
    assert_eq!(
        reopened.applied_state().await.unwrap().0,
        Some(log_id(1, 1, 2))
    );
    let served = reopened.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(served.meta, current.meta);
    assert_eq!(served.snapshot.into_inner(), current.snapshot.into_inner());
}

#[tokio::test]
async fn an_interrupted_install_is_finished_when_the_machine_opens() {
    let Pair {
        a,
        b,
        snapshot,
        _dirs,
        ..
    } = Pair::filled().await;

    // What `install_snapshot` stores first; the crash came before the rows.
    let record = snapshot_record(&snapshot.meta, snapshot.snapshot.get_ref()).unwrap();
    let key = super::super::log::state_key(GROUP, SNAPSHOT);
    b.raft_trees().state.insert(key, record).unwrap();
    let (mut follower, _) = machine(&b, GROUP);
    assert_eq!(
        follower.applied_state().await.unwrap().0,
        snapshot.meta.last_log_id
    );
    assert_eq!(rows(&b, GROUP), rows(&a, GROUP));
}

#[tokio::test]
async fn the_meta_machine_publishes_its_members_and_snapshots_them() {
    let (dir_a, dir_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (a, b) = (open(dir_a.path()), open(dir_b.path()));
    let member = |name: &str| Member {
        name: name.into(),
        cluster_addr: format!("{name}:4000"),
        http_addr: format!("{name}:8080"),
    };
    let (mut meta, mut members) = machine(&a, META);
    assert!(members.borrow_and_update().is_empty());
    let joins = [
        normal(
            1,
            Proposal::Join {
                id: 7,
                member: member("a"),
            },
        ),
        normal(
            2,
            Proposal::Join {
                id: 9,
                member: member("b"),
            },
        ),
        normal(
            3,
            Proposal::Join {
                id: 7,
                member: member("c"),
            },
        ),
    ];
    meta.apply(joins).await.unwrap();
    assert!(members.has_changed().unwrap());
    let expected = Members::from([(7, member("c")), (9, member("b"))]);
    assert_eq!(*members.borrow_and_update(), expected);

    drop(meta);
    let (mut meta, members) = machine(&a, META);
    assert_eq!(*members.borrow(), expected);

    let snapshot = (meta.get_snapshot_builder().await)
        .build_snapshot()
        .await
        .unwrap();
    let (mut follower, mut members) = machine(&b, META);
    follower
        .apply([normal(
            1,
            Proposal::Join {
                id: 3,
                member: member("z"),
            },
        )])
        .await
        .unwrap();
    follower
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap();
    assert_eq!(*members.borrow_and_update(), expected);
    drop(follower);
    let (_, members) = machine(&b, META);
    assert_eq!(*members.borrow(), expected);
}

#[tokio::test]
async fn a_join_proposed_to_a_partition_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let storage = open(dir.path());
    let (mut partition, members) = machine(&storage, GROUP);
    let join = Proposal::Join {
        id: 1,
        member: Member::default(),
    };
    let replies = partition.apply([normal(1, join)]).await.unwrap();
    assert_eq!(replies.len(), 1);
    assert!(storage.raft_trees().members.is_empty());
    assert!(members.borrow().is_empty());
}
