//! os-keypairs over real HTTP (issue 10, item 3): generate / import / list / show /
//! delete per microversion, per-user rings and admins acting for a user (2.10), paging
//! (2.35), Nova's messages for invalid keys and names, duplicates, unknown names and
//! the `key_pairs` quota (exact under concurrency), and `key_name` on server create and
//! rebuild. Every refusal appends nothing.

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use common::*;
use domain::quota::{QuotaCommand, Resource};
use engine::Meta;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The public key of Nova's keypairs-import-post sample and its fingerprint.
const PUB: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDx8nkQv/zgGgB4rMYmIf+6A4l6Rr+o/6lHBQdW5aYd44bd8JttDCE/F/pNRr0lRE+PiqSPO8nDPHw0010JeMH9gYgnnFlyY3/OcJ02RhIPyyxYpv9FhY+2YiUkpwFOcLImyrxEsYXpD/0d3ac30bNH6Sw9JD9UZHYcpSxsIbECHw== Generated-by-Nova";
const FP: &str = "1e:2c:9b:56:79:4b:45:77:f9:ca:7a:98:2c:b0:d5:3c";
/// An ed25519 key (another algorithm ssh-key parses).
const ED: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";
const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";

fn fault<'a>(r: &'a Resp, kind: &str, code: u16) -> &'a str {
    assert_eq!(r.status.as_u16(), code, "{:?}", r.body);
    let f = &r.body[kind];
    assert!(f.is_object(), "expected {kind}: {:?}", r.body);
    f["message"].as_str().unwrap()
}

/// POST /os-keypairs of `{"keypair": keypair}`.
async fn create(s: &Stack, token: &str, v: Option<&str>, keypair: Value) -> Resp {
    s.post("/v2.1/os-keypairs", token, v, json!({ "keypair": keypair }))
        .await
}

async fn import(s: &Stack, token: &str, v: &str, name: &str) -> Resp {
    create(s, token, Some(v), json!({"name": name, "public_key": PUB})).await
}

async fn set_limit(s: &Stack, project: &str, user: Option<&str>, n: i64) {
    let limits: BTreeMap<Resource, i64> = [(Resource::KeyPairs, n)].into();
    s.engine
        .quota(
            project,
            |_| QuotaCommand::SetLimits {
                user: user.map(str::to_string),
                limits: limits.clone(),
            },
            &svc_ctx(),
            &Meta::default(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn generate_import_list_show_delete() {
    let s = start().await;
    // Generated (2.1: 200, no type), private key returned once.
    let r = create(&s, ALICE, None, json!({"name": "gen"})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let k = &r.body["keypair"];
    let private = k["private_key"].as_str().unwrap().to_string();
    assert!(private.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(k["public_key"].as_str().unwrap().starts_with("ssh-rsa "));
    assert_eq!(k["user_id"], "alice");
    assert!(k.get("type").is_none());
    assert_eq!(k["fingerprint"].as_str().unwrap().len(), 47);

    // Imported (2.2: 201 with type).
    let r = create(
        &s,
        ALICE,
        Some("2.2"),
        json!({"name": "imp", "public_key": PUB}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["keypair"]["fingerprint"], FP);
    assert_eq!(r.body["keypair"]["type"], "ssh");
    assert!(r.body["keypair"].get("private_key").is_none());
    let r = create(
        &s,
        ALICE,
        Some("2.92"),
        json!({"name": "me@host.example", "public_key": ED}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);

    // Listed by name, per user; shown with Nova's show fields.
    let r = s.get("/v2.1/os-keypairs", ALICE, Some("2.2")).await;
    let names: Vec<&str> = r.body["keypairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["keypair"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gen", "imp", "me@host.example"]);
    assert_eq!(r.body["keypairs"][1]["keypair"]["type"], "ssh");
    let r = s.get("/v2.1/os-keypairs", BOB, None).await;
    assert_eq!(r.body, json!({"keypairs": []}));
    let r = s.get("/v2.1/os-keypairs/imp", ALICE, Some("2.2")).await;
    assert_eq!(r.status, StatusCode::OK);
    let k = &r.body["keypair"];
    assert_eq!(k["public_key"], PUB);
    assert_eq!(k["fingerprint"], FP);
    assert_eq!(k["user_id"], "alice");
    assert_eq!(k["deleted"], false);
    assert!(k["id"].as_u64().unwrap() > 0);
    assert!(k["created_at"].is_string());
    assert_eq!(k["updated_at"], Value::Null);
    // The private key was never stored: no response or event carries it.
    let r = s.get("/v2.1/os-keypairs/gen", ALICE, Some("2.2")).await;
    assert!(r.body["keypair"].get("private_key").is_none());
    let log = s.engine.log().clone();
    let api = eventlog::StreamName::api();
    let head = log.last_stream_seq(&api).await.unwrap();
    let commits = log.read_stream(&api, 1, head as usize + 1).await.unwrap();
    let needle = &private[40..80];
    for c in &commits {
        for e in &c.events {
            let text = String::from_utf8_lossy(&e.payload);
            assert!(!text.contains(needle), "private key in {}", e.event_type);
        }
    }
    assert!(commits
        .iter()
        .any(|c| c.events.iter().any(|e| e.event_type == "keypair.created")));

    // Bob cannot see Alice's key pair (it is not his).
    let r = s.get("/v2.1/os-keypairs/imp", BOB, None).await;
    assert_eq!(
        fault(&r, "itemNotFound", 404),
        "Keypair imp not found for user bob"
    );

    // Delete: 202 before 2.2, 204 from 2.2; then 404.
    let r = s
        .call(
            Method::DELETE,
            "/v2.1/os-keypairs/gen",
            Some(ALICE),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = s
        .call(
            Method::DELETE,
            "/v2.1/os-keypairs/imp",
            Some(ALICE),
            Some("2.2"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let before = s.positions().await;
    let r = s
        .call(
            Method::DELETE,
            "/v2.1/os-keypairs/imp",
            Some(ALICE),
            Some("2.2"),
            None,
        )
        .await;
    assert_eq!(
        fault(&r, "itemNotFound", 404),
        "Keypair imp not found for user alice"
    );
    let r = s.get("/v2.1/os-keypairs/imp", ALICE, None).await;
    fault(&r, "itemNotFound", 404);
    assert_eq!(s.positions().await, before, "refusals appended");
    // A deleted name can be taken again.
    assert_eq!(
        import(&s, ALICE, "2.2", "imp").await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn x509_keys() {
    let s = start().await;
    let r = create(
        &s,
        ALICE,
        Some("2.2"),
        json!({"name": "cert", "type": "x509"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let k = &r.body["keypair"];
    assert_eq!(k["type"], "x509");
    let pem = k["public_key"].as_str().unwrap().to_string();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
    // Nova's: the base64 of a PKCS#12 bundle (key and certificate, empty password).
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(k["private_key"].as_str().unwrap())
        .unwrap();
    let store = p12_keystore::KeyStore::from_pkcs12(&bundle, "").unwrap();
    assert!(store.private_key_chain().is_some());
    let fp = k["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fp.len(), 59, "SHA-1 colon hex");
    // The certificate imports under another name with the same fingerprint.
    let r = create(
        &s,
        ALICE,
        Some("2.2"),
        json!({"name": "cert2", "type": "x509", "public_key": pem}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["keypair"]["fingerprint"], fp);
    // An ssh key is not a certificate.
    let before = s.positions().await;
    let r = create(
        &s,
        ALICE,
        Some("2.2"),
        json!({"name": "bad", "type": "x509", "public_key": PUB}),
    )
    .await;
    assert!(fault(&r, "badRequest", 400)
        .starts_with("Keypair data is invalid: failed to generate X509 fingerprint."));
    assert_eq!(s.positions().await, before);
}

#[tokio::test]
async fn bad_requests_append_nothing() {
    let s = start().await;
    assert_eq!(
        import(&s, ALICE, "2.2", "k").await.status,
        StatusCode::CREATED
    );
    let before = s.positions().await;
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "2.2",
            json!({"keypair": {"name": "x", "public_key": "ssh-rsa AAAA"}}),
            400,
            "Keypair data is invalid: failed to generate fingerprint",
        ),
        (
            "2.2",
            json!({"keypair": {"name": "x", "public_key": "not a key"}}),
            400,
            "Keypair data is invalid: failed to generate fingerprint",
        ),
        (
            "2.2",
            json!({"keypair": {"name": "k", "public_key": PUB}}),
            409,
            "Key pair 'k' already exists.",
        ),
        (
            "2.92",
            json!({"keypair": {"name": "x"}}),
            400,
            "'public_key' is a required property",
        ),
        (
            "2.91",
            json!({"keypair": {"name": "a.b", "public_key": PUB}}),
            400,
            "does not match",
        ),
        (
            "2.92",
            json!({"keypair": {"name": "a/b", "public_key": PUB}}),
            400,
            "does not match",
        ),
        (
            "2.2",
            json!({"keypair": {"name": " x", "public_key": PUB}}),
            400,
            "An invalid 'name' value was provided.",
        ),
        (
            "2.2",
            json!({"keypair": {"name": "", "public_key": PUB}}),
            400,
            "is too short",
        ),
        (
            "2.1",
            json!({"keypair": {"name": "x", "type": "ssh"}}),
            400,
            "Additional properties are not allowed ('type' was unexpected)",
        ),
        (
            "2.9",
            json!({"keypair": {"name": "x", "user_id": "alice"}}),
            400,
            "Additional properties are not allowed ('user_id' was unexpected)",
        ),
        (
            "2.2",
            json!({"keypair": {"name": "x", "type": "rsa"}}),
            400,
            "is not one of ['ssh', 'x509']",
        ),
        ("2.2", json!({"name": "x"}), 400, "'name' was unexpected"),
    ];
    for (v, body, code, want) in cases {
        let r = s
            .post("/v2.1/os-keypairs", ALICE, Some(v), body.clone())
            .await;
        assert_eq!(r.status.as_u16(), code, "{body} @ {v}: {:?}", r.body);
        let msg = r.body.as_object().unwrap().values().next().unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(want), "{body} @ {v}: {msg}");
    }
    // 2.75: unknown query keys are refused; before, ignored.
    let r = s
        .get("/v2.1/os-keypairs?bogus=1", ALICE, Some("2.75"))
        .await;
    fault(&r, "badRequest", 400);
    let r = s
        .get("/v2.1/os-keypairs?bogus=1", ALICE, Some("2.74"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .get("/v2.1/os-keypairs?marker=nope", ALICE, Some("2.35"))
        .await;
    assert_eq!(
        fault(&r, "badRequest", 400),
        "Marker nope could not be found."
    );
    assert_eq!(s.positions().await, before, "refusals appended");
}

#[tokio::test]
async fn admins_act_for_other_users_from_2_10() {
    let s = start().await;
    let r = create(
        &s,
        ADMIN,
        Some("2.10"),
        json!({"name": "for-bob", "public_key": PUB, "user_id": "bob"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["keypair"]["user_id"], "bob");
    // It is Bob's: he sees it, the admin's own ring does not hold it.
    let r = s.get("/v2.1/os-keypairs/for-bob", BOB, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["keypair"]["user_id"], "bob");
    let r = s
        .get("/v2.1/os-keypairs/for-bob", ADMIN, Some("2.10"))
        .await;
    fault(&r, "itemNotFound", 404);
    let r = s
        .get("/v2.1/os-keypairs/for-bob?user_id=bob", ADMIN, Some("2.10"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s
        .get("/v2.1/os-keypairs?user_id=bob", ADMIN, Some("2.10"))
        .await;
    assert_eq!(r.body["keypairs"].as_array().unwrap().len(), 1);
    // Before 2.10 the query is ignored: the admin's own (empty) ring.
    let r = s
        .get("/v2.1/os-keypairs?user_id=bob", ADMIN, Some("2.9"))
        .await;
    assert_eq!(r.body["keypairs"], json!([]));

    // Non-admins may not name another user (403 with the policy name), but may name
    // themselves.
    let before = s.positions().await;
    let r = create(
        &s,
        ALICE,
        Some("2.10"),
        json!({"name": "x", "public_key": PUB, "user_id": "bob"}),
    )
    .await;
    assert_eq!(
        fault(&r, "forbidden", 403),
        "Policy doesn't allow os_compute_api:os-keypairs:create to be performed."
    );
    for (m, path, policy) in [
        (Method::GET, "/v2.1/os-keypairs?user_id=bob", "index"),
        (Method::GET, "/v2.1/os-keypairs/for-bob?user_id=bob", "show"),
        (
            Method::DELETE,
            "/v2.1/os-keypairs/for-bob?user_id=bob",
            "delete",
        ),
    ] {
        let r = s.call(m, path, Some(ALICE), Some("2.10"), None).await;
        assert_eq!(
            fault(&r, "forbidden", 403),
            format!("Policy doesn't allow os_compute_api:os-keypairs:{policy} to be performed.")
        );
    }
    assert_eq!(s.positions().await, before, "refusals appended");
    let r = s
        .get("/v2.1/os-keypairs?user_id=alice", ALICE, Some("2.10"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // A reader acts on its own key pairs too (no role needed in Nova's rule).
    let r = create(
        &s,
        "carol:p1:reader",
        Some("2.2"),
        json!({"name": "mine", "public_key": PUB}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = s
        .call(
            Method::DELETE,
            "/v2.1/os-keypairs/for-bob?user_id=bob",
            Some(ADMIN),
            Some("2.10"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn paging_from_2_35() {
    let s = start().await;
    for n in ["c", "a", "e", "b", "d"] {
        assert_eq!(
            import(&s, ALICE, "2.2", n).await.status,
            StatusCode::CREATED
        );
    }
    let names = |r: &Resp| -> Vec<String> {
        r.body["keypairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["keypair"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let r = s
        .get("/v2.1/os-keypairs?limit=2", ALICE, Some("2.35"))
        .await;
    assert_eq!(names(&r), ["a", "b"]);
    let next = r.body["keypairs_links"][0]["href"].as_str().unwrap();
    assert!(
        next.ends_with("/v2.1/os-keypairs?limit=2&marker=b"),
        "{next}"
    );
    let r = s
        .get("/v2.1/os-keypairs?limit=2&marker=b", ALICE, Some("2.35"))
        .await;
    assert_eq!(names(&r), ["c", "d"]);
    let r = s
        .get("/v2.1/os-keypairs?limit=2&marker=d", ALICE, Some("2.35"))
        .await;
    assert_eq!(names(&r), ["e"]);
    assert!(r.body.get("keypairs_links").is_none());
    // Before 2.35 paging parameters are ignored.
    let r = s
        .get("/v2.1/os-keypairs?limit=2", ALICE, Some("2.34"))
        .await;
    assert_eq!(names(&r).len(), 5);
    let r = s
        .get("/v2.1/os-keypairs?limit=-1", ALICE, Some("2.35"))
        .await;
    fault(&r, "badRequest", 400);
}

#[tokio::test]
async fn key_pairs_quota_is_exact_under_concurrency() {
    let s = start().await;
    set_limit(&s, "p1", None, 3).await;
    for n in ["k1", "k2", "k3"] {
        assert_eq!(
            import(&s, ALICE, "2.2", n).await.status,
            StatusCode::CREATED
        );
    }
    let before = s.positions().await;
    let r = import(&s, ALICE, "2.2", "k4").await;
    assert_eq!(
        fault(&r, "forbidden", 403),
        "Quota exceeded, too many key pairs."
    );
    // Quota comes before the duplicate check, as in Nova.
    let r = import(&s, ALICE, "2.2", "k1").await;
    fault(&r, "forbidden", 403);
    assert_eq!(s.positions().await, before, "refusals appended");
    // Per user: Bob's ring (another project) is not Alice's.
    assert_eq!(
        import(&s, BOB, "2.2", "k1").await.status,
        StatusCode::CREATED
    );
    // A user override wins over the project's.
    set_limit(&s, "p1", Some("alice"), 4).await;
    assert_eq!(
        import(&s, ALICE, "2.2", "k4").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.engine.world().read().keypairs().count_for_user("alice"),
        4
    );

    // 60 racing creates (distinct names) against room for 10: exactly 10 pass.
    set_limit(&s, "p2", None, 10).await;
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let base = s.base.clone();
            let client = s.client.clone();
            tokio::spawn(async move {
                client
                    .post(format!("{base}/v2.1/os-keypairs"))
                    .header("X-Auth-Token", "dave:p2")
                    .header("OpenStack-API-Version", "compute 2.2")
                    .json(&json!({"keypair": {"name": format!("r{i}"), "public_key": PUB}}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        match t.await.unwrap().as_u16() {
            201 => created += 1,
            403 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 10);
    assert_eq!(
        s.engine.world().read().keypairs().count_for_user("dave"),
        10
    );

    // 30 racing creates of one name: exactly one wins, the others get the 409.
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let base = s.base.clone();
            let client = s.client.clone();
            tokio::spawn(async move {
                client
                    .post(format!("{base}/v2.1/os-keypairs"))
                    .header("X-Auth-Token", "erin:p3")
                    .header("OpenStack-API-Version", "compute 2.2")
                    .json(&json!({"keypair": {"name": "same", "public_key": PUB}}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 201 || *c == 409), "{codes:?}");
}

#[tokio::test]
async fn server_key_name_is_validated_and_shown() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    assert_eq!(
        import(&s, ALICE, "2.2", "mykey").await.status,
        StatusCode::CREATED
    );
    let body = |key: &str| json!({"server": {"name": "vm", "imageRef": IMAGE, "flavorRef": "1", "key_name": key}});
    let before = s.positions().await;
    // Unknown, and another user's (Bob's key is not Alice's).
    assert_eq!(
        import(&s, BOB, "2.2", "bobkey").await.status,
        StatusCode::CREATED
    );
    let before_bob = s.positions().await;
    assert_ne!(before, before_bob);
    for k in ["nokey", "bobkey"] {
        let r = s.post("/v2.1/servers", ALICE, None, body(k)).await;
        assert_eq!(fault(&r, "badRequest", 400), "Invalid key_name provided.");
    }
    assert_eq!(s.positions().await, before_bob, "refusals appended");
    let r = s.post("/v2.1/servers", ALICE, None, body("mykey")).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    let r = s.get(&format!("/v2.1/servers/{id}"), ALICE, None).await;
    assert_eq!(r.body["server"]["key_name"], "mykey");

    // Rebuild (2.54) with a key name: the caller's key pairs only.
    let host = s.register_host("compute-1").await;
    s.make_active(&id, &host).await;
    let action = format!("/v2.1/servers/{id}/action");
    let before = s.positions().await;
    let r = s
        .post(
            &action,
            ALICE,
            Some("2.54"),
            json!({"rebuild": {"imageRef": IMAGE, "key_name": "bobkey"}}),
        )
        .await;
    assert_eq!(fault(&r, "badRequest", 400), "Invalid key_name provided.");
    assert_eq!(s.positions().await, before, "refusals appended");
    assert_eq!(
        import(&s, ALICE, "2.2", "newkey").await.status,
        StatusCode::CREATED
    );
    let r = s
        .post(
            &action,
            ALICE,
            Some("2.54"),
            json!({"rebuild": {"imageRef": IMAGE, "key_name": "newkey"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body["server"]["key_name"], "newkey");
}
