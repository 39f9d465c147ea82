//! The PostgreSQL outbox against a real server (HERALD_TEST_DATABASE_URL) and a real
//! broker: transactions committing out of order are never skipped (and a naive
//! `id > cursor` relay, run alongside as the negative control, does skip them); relay
//! crashes lose nothing; a second relay takes over within the lease; an open transaction
//! shows up in the backlog figures.

mod outbox_common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::outbox::{OutboxStore, Position, PostgresOutbox};
use herald::testkit::TestBroker;
use outbox_common::{
    Relaying, Written, check_arrivals, drop_schema, log_if_asked, postgres_pool, quick, random_bytes, read_back,
};
use uuid::Uuid;

/// What the writers did.
#[derive(Default)]
struct Ledger {
    committed: HashSet<Uuid>,
    rolled_back: HashSet<Uuid>,
    committed_row_ids: HashSet<i64>,
}

/// `writers` tasks, each running `transactions` transactions of one event (keys
/// `w<writer>-k<0..4>`), sleeping up to `max_sleep` between the insert and the end, and
/// rolling back `rollback_percent` of them.
async fn write(
    outbox: &PostgresOutbox,
    writers: u32,
    transactions: u32,
    max_sleep: Duration,
    rollback_percent: u8,
) -> Ledger {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (outbox, ledger) = (outbox.clone(), Arc::clone(&ledger));
        tasks.push(tokio::spawn(async move {
            for seq in 0..transactions {
                let random = random_bytes();
                let mut tx = outbox.pool().begin().await.expect("begin");
                let event = Written { key: format!("w{writer}-k{}", seq % 4), writer, seq };
                let id = outbox.enqueue(&mut tx, event).await.expect("enqueue");
                let (row_id,): (i64,) = sqlx::query_as("SELECT id FROM herald_outbox WHERE event_id = $1::uuid")
                    .bind(id.to_string())
                    .fetch_one(&mut *tx)
                    .await
                    .expect("row id");
                let sleep = max_sleep.mul_f64(f64::from(random[0]) / 255.0);
                tokio::time::sleep(sleep).await;
                if random[1] % 100 < rollback_percent {
                    tx.rollback().await.expect("rollback");
                    ledger.lock().expect("ledger").rolled_back.insert(id);
                } else {
                    tx.commit().await.expect("commit");
                    let mut ledger = ledger.lock().expect("ledger");
                    ledger.committed.insert(id);
                    ledger.committed_row_ids.insert(row_id);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    Arc::try_unwrap(ledger).ok().expect("writers done").into_inner().expect("ledger")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_commits_are_never_skipped_while_a_naive_cursor_skips_them() {
    log_if_asked();
    let Some(pool) = postgres_pool("out_of_order_commits_are_never_skipped", 24).await else { return };
    let broker = TestBroker::start().await;
    let outbox = PostgresOutbox::new(pool.clone()).await.expect("outbox").source("auth-service");
    let mut relay = Relaying::start(outbox.clone(), &broker.bootstrap(), quick(Duration::from_secs(5)));

    // The negative control: `SELECT ... WHERE id > cursor`, polled as fast as it goes
    // (with the index on id such a relay would have).
    sqlx::query("CREATE INDEX herald_outbox_naive ON herald_outbox (id)").execute(&pool).await.expect("index");
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let naive = {
        let (pool, writing) = (pool.clone(), Arc::clone(&writing));
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (0i64, HashSet::new());
            loop {
                let done = !writing.load(std::sync::atomic::Ordering::SeqCst);
                let rows: Vec<(i64,)> =
                    sqlx::query_as("SELECT id FROM herald_outbox WHERE id > $1 ORDER BY id LIMIT 1000")
                        .bind(cursor)
                        .fetch_all(&pool)
                        .await
                        .expect("naive read");
                for (id,) in rows {
                    seen.insert(id);
                    cursor = cursor.max(id);
                }
                if done {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let ledger = write(&outbox, 16, 40, Duration::from_millis(50), 10).await;
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let naive_seen = naive.await.expect("naive relay");
    let naive_skipped = ledger.committed_row_ids.difference(&naive_seen).count();

    let mut acked = HashSet::new();
    relay.wait_for(&ledger.committed, &mut acked, Duration::from_secs(60)).await;
    relay.stop().await;
    let rolled_back_published = ledger.rolled_back.intersection(&acked).count();
    let arrived = read_back(&broker.bootstrap(), &ledger.committed).await;
    let (distinct, repeats) = check_arrivals(&arrived, &ledger.committed);
    println!(
        "committed {}, rolled back {}; herald relay: skipped 0, published {distinct}, repeats {repeats}, \
         rolled back published {rolled_back_published}; naive id > cursor relay: skipped {naive_skipped}",
        ledger.committed.len(),
        ledger.rolled_back.len()
    );
    assert_eq!(rolled_back_published, 0, "a rolled-back event was published");
    assert!(!ledger.rolled_back.is_empty(), "the run had rollbacks");
    assert!(
        naive_skipped > 0,
        "the naive relay skipped nothing: this run cannot tell a correct relay from a naive one"
    );
    drop_schema(pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_crashes_at_random_points_lose_nothing() {
    log_if_asked();
    let Some(pool) = postgres_pool("relay_crashes_at_random_points_lose_nothing", 12).await else { return };
    let broker = TestBroker::start().await;
    let outbox = PostgresOutbox::new(pool.clone()).await.expect("outbox");
    let ttl = Duration::from_millis(300);
    let writers = {
        let outbox = outbox.clone();
        tokio::spawn(async move { write(&outbox, 4, 600, Duration::from_millis(8), 5).await })
    };
    let mut aborted_with_work = 0;
    for cycle in 0..50u32 {
        let mut relay = Relaying::start(outbox.clone(), &broker.bootstrap(), quick(ttl));
        // Crash at a random point: while standing by, reading, sending or moving the cursor.
        let random = random_bytes()[0];
        tokio::time::sleep(Duration::from_millis(10 + u64::from(random) / 2)).await;
        if relay.acked.try_recv().is_ok() {
            aborted_with_work += 1;
        }
        relay.abort().await;
        if cycle % 10 == 9 {
            println!("crash cycle {}", cycle + 1);
        }
    }
    let ledger = writers.await.expect("writers");
    // One more relay sends whatever the crashed ones left; the broker is the judge of
    // what arrived (earlier relays acknowledged most of it before they died).
    let relay = Relaying::start(outbox.clone(), &broker.bootstrap(), quick(ttl));
    let arrived = read_back(&broker.bootstrap(), &ledger.committed).await;
    relay.stop().await;
    let (distinct, repeats) = check_arrivals(&arrived, &ledger.committed);
    println!(
        "50 relay crashes ({aborted_with_work} after publishing something): committed {}, arrived {distinct}, repeats {repeats}",
        ledger.committed.len()
    );
    assert!(aborted_with_work > 0, "no crash hit a working relay");
    drop_schema(pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_relay_takes_over_within_the_lease() {
    log_if_asked();
    let Some(pool) = postgres_pool("a_second_relay_takes_over_within_the_lease", 12).await else { return };
    let broker = TestBroker::start().await;
    let outbox = PostgresOutbox::new(pool.clone()).await.expect("outbox");
    let ttl = Duration::from_secs(2);
    let config = quick(ttl);
    let poll = config.poll_interval;
    let mut relays = [
        Some(Relaying::start(outbox.clone(), &broker.bootstrap(), config.clone())),
        Some(Relaying::start(outbox.clone(), &broker.bootstrap(), config)),
    ];
    let writers = {
        let outbox = outbox.clone();
        tokio::spawn(async move { write(&outbox, 2, 600, Duration::from_millis(10), 0).await })
    };
    // Whichever relay publishes is the active one.
    let active = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(i) = (0..2).find(|&i| relays[i].as_mut().is_some_and(|r| r.acked.try_recv().is_ok())) {
            break i;
        }
    };
    let standby = 1 - active;
    while relays[standby].as_mut().expect("standby").acked.try_recv().is_ok() {}
    relays[active].take().expect("active").abort().await;
    let killed = Instant::now();
    let mut survivor = relays[standby].take().expect("standby");
    let first =
        tokio::time::timeout(ttl * 3, survivor.acked.recv()).await.expect("the standby took over").expect("acked");
    let takeover = killed.elapsed();
    assert!(!first.events.is_empty());
    let ledger = writers.await.expect("writers");
    let arrived = read_back(&broker.bootstrap(), &ledger.committed).await;
    survivor.stop().await;
    let (distinct, repeats) = check_arrivals(&arrived, &ledger.committed);
    println!("takeover after {takeover:?} (lease {ttl:?}); arrived {distinct}, repeats {repeats}");
    assert!(takeover <= ttl + poll + Duration::from_millis(300), "takeover took {takeover:?} with a {ttl:?} lease");
    drop_schema(pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_transaction_holds_rows_back_and_shows_in_the_backlog() {
    log_if_asked();
    let Some(pool) = postgres_pool("an_open_transaction_holds_rows_back", 4).await else { return };
    let outbox = PostgresOutbox::new(pool.clone()).await.expect("outbox");
    let event = |seq| Written { key: "k".into(), writer: 0, seq };
    let mut open = pool.begin().await.expect("begin");
    let held = outbox.enqueue(&mut open, event(0)).await.expect("enqueue");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut later = pool.begin().await.expect("begin");
    let visible = outbox.enqueue(&mut later, event(1)).await.expect("enqueue");
    later.commit().await.expect("commit");

    let fetched = outbox.fetch(Position::default(), 100).await.expect("fetch");
    assert!(fetched.is_empty(), "a row behind an open transaction must wait: {fetched:?}");
    let backlog = outbox.backlog(Position::default()).await.expect("backlog");
    assert_eq!((backlog.rows, backlog.fenced_rows), (1, 1), "{backlog:?}");
    let open_for = backlog.oldest_write_transaction.expect("the open transaction is seen");
    assert!(open_for >= Duration::from_millis(200), "{open_for:?}");

    open.commit().await.expect("commit");
    // The fence is the whole server's oldest open transaction: tests running alongside may
    // hold it back a moment longer.
    let deadline = Instant::now() + Duration::from_secs(30);
    let fetched: Vec<Uuid> = loop {
        let rows = outbox.fetch(Position::default(), 100).await.expect("fetch");
        if rows.len() == 2 || Instant::now() > deadline {
            break rows.iter().map(|r| r.event_id).collect();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(fetched, vec![held, visible], "both, in transaction order");
    drop_schema(pool).await;
}
