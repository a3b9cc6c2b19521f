//! The key ring's decisions: unique names per user, the `key_pairs` quota (checked
//! before the duplicate, as Nova), delete of unknown names, and fold of the decided
//! events.

use domain::keypair::{self, KeyRing, KeyType, KeypairCommand, KeypairEvent, PublicKey};
use domain::{DomainError, Timestamp};

fn key() -> PublicKey {
    PublicKey {
        key_type: KeyType::Ssh,
        public_key: "ssh-ed25519 AAAA test".into(),
        fingerprint: "00:11".into(),
    }
}

fn create(name: &str, limit: i64) -> KeypairCommand {
    KeypairCommand::Create {
        name: name.into(),
        key: key(),
        limit,
    }
}

/// Decides then folds, as the engine and the read model do.
fn run(ring: Option<KeyRing>, cmd: KeypairCommand, pos: u64) -> Result<KeyRing, DomainError> {
    let evs = keypair::decide(ring.as_ref(), cmd, Timestamp(pos as i64))?;
    Ok(evs
        .iter()
        .fold(ring, |r, e| keypair::evolve(r, e, pos))
        .unwrap_or_default())
}

#[test]
fn create_records_public_material_and_position() {
    let evs = keypair::decide(None, create("k", 10), Timestamp(5)).unwrap();
    assert_eq!(
        evs,
        vec![KeypairEvent::Created {
            name: "k".into(),
            key_type: KeyType::Ssh,
            public_key: "ssh-ed25519 AAAA test".into(),
            fingerprint: "00:11".into(),
            at: Timestamp(5),
        }]
    );
    let ring = run(None, create("k", 10), 42).unwrap();
    let k = &ring.keys["k"];
    assert_eq!(
        (k.id, k.created_at, k.key_type),
        (42, Timestamp(42), KeyType::Ssh)
    );
    assert_eq!(ring.count(), 1);
}

#[test]
fn names_are_unique_per_ring() {
    let ring = run(None, create("k", -1), 1).unwrap();
    assert_eq!(
        keypair::decide(Some(&ring), create("k", -1), Timestamp(2)),
        Err(DomainError::Conflict("Key pair 'k' already exists.".into()))
    );
    assert!(keypair::decide(Some(&ring), create("other", -1), Timestamp(2)).is_ok());
}

#[test]
fn quota_counts_the_ring_and_comes_first() {
    let mut ring = None;
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        ring = Some(run(ring, create(n, 3), i as u64 + 1).unwrap());
    }
    let ring = ring.unwrap();
    let over = Err(DomainError::Forbidden(
        "Quota exceeded, too many key pairs.".into(),
    ));
    assert_eq!(
        keypair::decide(Some(&ring), create("d", 3), Timestamp(9)),
        over
    );
    // A taken name over quota: the quota answers first.
    assert_eq!(
        keypair::decide(Some(&ring), create("a", 3), Timestamp(9)),
        over
    );
    // Unlimited and a higher limit admit it; a limit of 0 admits nothing.
    assert!(keypair::decide(Some(&ring), create("d", -1), Timestamp(9)).is_ok());
    assert!(keypair::decide(Some(&ring), create("d", 4), Timestamp(9)).is_ok());
    assert_eq!(keypair::decide(None, create("d", 0), Timestamp(9)), over);
    // A delete makes room again.
    let ring = run(Some(ring), KeypairCommand::Delete { name: "b".into() }, 10).unwrap();
    assert_eq!(ring.count(), 2);
    assert!(keypair::decide(Some(&ring), create("d", 3), Timestamp(11)).is_ok());
}

#[test]
fn delete_needs_the_name() {
    assert_eq!(
        keypair::decide(
            None,
            KeypairCommand::Delete { name: "x".into() },
            Timestamp(1)
        ),
        Err(DomainError::NotFound {
            kind: "Keypair",
            id: "x".into()
        })
    );
    let ring = run(None, create("x", -1), 1).unwrap();
    let ring = run(Some(ring), KeypairCommand::Delete { name: "x".into() }, 2).unwrap();
    assert!(ring.keys.is_empty());
    // The name can be taken again, with a new id.
    let ring = run(Some(ring), create("x", -1), 3).unwrap();
    assert_eq!(ring.keys["x"].id, 3);
}

#[test]
fn evolve_is_total() {
    // A delete of a name the ring does not hold folds to the same ring.
    let e = KeypairEvent::Deleted {
        name: "ghost".into(),
        at: Timestamp(1),
    };
    assert_eq!(keypair::evolve(None, &e, 1), Some(KeyRing::default()));
}
