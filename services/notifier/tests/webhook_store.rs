//! Webhook delivery states: kept across a reopen of `notifications.redb` (the cursor a
//! restarted deliverer resumes from) and on a real nats-server (the `STRATUS_WEBHOOKS`
//! stream keeps the last state per subscription); and which notifications a
//! subscription wants.

use domain::subscription::Subscription;
use domain::{SubscriptionId, Timestamp};
use notifier::store::EmbeddedNotifications;
use notifier::webhook::{wanted, DeliveryState, DeliveryStore, JetStreamDeliveries};
use notifier::Notification;
use serde_json::json;
use uuid::Uuid;

fn state(cursor: u64) -> DeliveryState {
    DeliveryState {
        cursor,
        delivered: cursor,
        attempts: 2,
        in_flight: Some(cursor + 1),
        last_attempt_at: Some("2026-01-01T00:00:00Z".into()),
        last_status: Some(503),
        last_error: Some("HTTP 503".into()),
        next_retry_at: Some("2026-01-01T00:00:02Z".into()),
    }
}

async fn keeps_the_last_state(store: &dyn DeliveryStore) {
    let (a, b) = (
        SubscriptionId(Uuid::from_u128(1)),
        SubscriptionId(Uuid::from_u128(2)),
    );
    assert_eq!(store.load(a).await.unwrap(), None);
    store.save(a, &state(3)).await.unwrap();
    store.save(a, &state(7)).await.unwrap();
    store.save(b, &state(1)).await.unwrap();
    assert_eq!(store.load(a).await.unwrap(), Some(state(7)));
    assert_eq!(store.load(b).await.unwrap(), Some(state(1)));
}

#[tokio::test]
async fn embedded_states_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notifications.redb");
    {
        let s = EmbeddedNotifications::open(&path).unwrap();
        keeps_the_last_state(&s).await;
    }
    let s = EmbeddedNotifications::open(&path).unwrap();
    let a = SubscriptionId(Uuid::from_u128(1));
    assert_eq!(s.load(a).await.unwrap(), Some(state(7)));
}

#[tokio::test]
async fn jetstream_states_keep_the_last_per_subscription() {
    let nats = eventlog::testing::NatsServer::start().expect("nats-server starts");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let s = JetStreamDeliveries::open(client.clone(), 1).await.unwrap();
    keeps_the_last_state(&s).await;
    // Opened again (another process): the same states; one message per subscription.
    let again = JetStreamDeliveries::open(client.clone(), 1).await.unwrap();
    let a = SubscriptionId(Uuid::from_u128(1));
    assert_eq!(again.load(a).await.unwrap(), Some(state(7)));
    let mut info = async_nats::jetstream::new(client)
        .get_stream(notifier::webhook::STREAM)
        .await
        .unwrap();
    assert_eq!(info.info().await.unwrap().state.messages, 2);
}

fn note(ty: &str, project: &str) -> Notification {
    Notification {
        priority: "INFO".into(),
        event_type: ty.into(),
        timestamp: "2026-01-01 00:00:00.000000".into(),
        publisher_id: "nova-compute:host1".into(),
        message_id: Uuid::from_u128(9),
        payload: json!({"nova_object.data": {"tenant_id": project}}),
    }
}

#[test]
fn a_subscription_wants_its_types_and_project() {
    let sub = |types: &[&str], project: Option<&str>| Subscription {
        id: SubscriptionId(Uuid::nil()),
        url: "http://h".into(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        project: project.map(String::from),
        secret: "k".into(),
        cursor: 0,
        created_at: Timestamp(0),
    };
    let pauses = sub(&["instance.pause", "instance.delete.end"], None);
    assert!(wanted(&pauses, &note("instance.pause.start", "p1")));
    assert!(wanted(&pauses, &note("instance.delete.end", "p2")));
    assert!(!wanted(&pauses, &note("instance.delete.start", "p1")));
    assert!(!wanted(&pauses, &note("instance.pause_x.start", "p1")));
    let p1 = sub(&["instance"], Some("p1"));
    assert!(wanted(&p1, &note("instance.create.end", "p1")));
    assert!(!wanted(&p1, &note("instance.create.end", "p2")));
}
