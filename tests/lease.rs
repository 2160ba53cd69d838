//! The DynamoDB leader lease (`src/lease.rs`) against moto's DynamoDB: one leader among
//! contenders, renewal, takeover after expiry, and a paused leader's writes refused by the
//! fencing token after it wakes. Real time, short leases: the assertions are about who
//! holds the lease and which writes land, never about how long anything took.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use common::moto;
use rotationd::store::dynamodb::{Lease, Role, ensure_table};

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn item(pk: &str, writer: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_string(), AttributeValue::S(pk.to_string())),
        ("sk".to_string(), AttributeValue::S("-".to_string())),
        ("writer".to_string(), AttributeValue::S(writer.to_string())),
    ])
}

async fn writer_of(client: &aws_sdk_dynamodb::Client, table: &str, pk: &str) -> Option<String> {
    client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_string()))
        .key("sk", AttributeValue::S("-".to_string()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item()
        .and_then(|i| i.get("writer"))
        .and_then(|w| w.as_s().ok())
        .cloned()
}

#[tokio::test]
async fn one_leader_renewal_takeover_and_a_woken_leader_is_fenced_off() {
    let m = moto::shared();
    let client = aws_sdk_dynamodb::Client::new(&moto::sdk_config(&m.endpoint()));
    let table = moto::unique_name("rotationd-lease").replace('/', "-");
    ensure_table(&client, &table).await.unwrap();
    ensure_table(&client, &table).await.unwrap(); // idempotent
    let lease_for = Duration::from_secs(2);
    let mut a = Lease::new(client.clone(), &table, "rotationd", "host-a", lease_for);
    let mut b = Lease::new(client.clone(), &table, "rotationd", "host-b", lease_for);

    // Two contenders: exactly one leads.
    let ra = a.tick(now_ms()).await.unwrap();
    let rb = b.tick(now_ms()).await.unwrap();
    let Role::Leader { token: first, .. } = ra else {
        panic!("a should lead: {ra:?}");
    };
    assert_eq!(holder(&rb), Some("host-a"), "{rb:?}");
    assert!(a.fenced_put(item("attempt#1", "host-a")).await.unwrap());
    assert!(
        !b.fenced_put(item("attempt#1", "host-b")).await.unwrap(),
        "a standby never writes"
    );

    // Renewal keeps the token, and b stays standby while a renews.
    for _ in 0..3 {
        tokio::time::sleep(a.renew_every()).await;
        assert_eq!(token(&a.tick(now_ms()).await.unwrap()), Some(first));
        assert_eq!(holder(&b.tick(now_ms()).await.unwrap()), Some("host-a"));
    }

    // a stops renewing (paused); once its lease has expired, b takes over with a new token.
    tokio::time::sleep(lease_for + Duration::from_millis(500)).await;
    let second = token(&b.tick(now_ms()).await.unwrap()).expect("b should have taken over");
    assert_eq!(second, first + 1);
    assert!(b.fenced_put(item("attempt#1", "host-b")).await.unwrap());

    // a wakes up still believing it leads: its write is refused by the fence...
    assert!(a.fence().is_some(), "a has not noticed yet");
    assert!(!a.fenced_put(item("attempt#1", "host-a")).await.unwrap());
    assert_eq!(
        writer_of(&client, &table, "attempt#1").await.as_deref(),
        Some("host-b")
    );
    // ...and its next renewal finds out and turns it standby.
    assert_eq!(holder(&a.tick(now_ms()).await.unwrap()), Some("host-b"));
    assert!(a.fence().is_none());
    assert!(!a.fenced_put(item("attempt#2", "host-a")).await.unwrap());
    assert_eq!(writer_of(&client, &table, "attempt#2").await, None);
}

fn token(r: &Role) -> Option<u64> {
    match r {
        Role::Leader { token, .. } => Some(*token),
        Role::Standby { .. } => None,
    }
}

fn holder(r: &Role) -> Option<&str> {
    match r {
        Role::Standby { holder, .. } => holder.as_deref(),
        Role::Leader { .. } => None,
    }
}
