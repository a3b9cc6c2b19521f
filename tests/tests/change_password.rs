//! `changePassword` (os-admin-password, issue 12 item 1): an ACTIVE server goes through
//! `updating_password` (status PASSWORD) back to ACTIVE, recorded as Nova's
//! `changePassword` instance action; other states are a 409, a bad body a 400, and the
//! password itself is never written to the log.

use serde_json::json;
use tests::Harness;

const ALICE: &str = "alice:proj-a";
const SECRET: &str = "s3cret-N3w-pass";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_on_an_active_server() {
    let h = Harness::start(|_| {}).await;
    let id = h.create(ALICE, "pw", "1").await;
    h.wait(&id, "ACTIVE").await;
    let v = h
        .action(
            ALICE,
            &id,
            json!({"changePassword": {"adminPass": SECRET}}),
            202,
        )
        .await;
    assert!(v.is_null(), "{v}");
    h.wait(&id, "ACTIVE").await;
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::GET,
            &format!("/servers/{id}/os-instance-actions"),
            None,
        )
        .await;
    assert_eq!(code, 200, "{v}");
    let actions = v["instanceActions"].as_array().unwrap();
    let a = actions
        .iter()
        .find(|a| a["action"] == "changePassword")
        .expect("a changePassword action");
    let req = a["request_id"].as_str().unwrap();
    let (_, v) = h
        .req(
            ALICE,
            reqwest::Method::GET,
            &format!("/servers/{id}/os-instance-actions/{req}"),
            None,
        )
        .await;
    assert_eq!(
        v["instanceAction"]["events"][0]["event"], "compute_set_admin_password",
        "{v}"
    );
    assert_eq!(v["instanceAction"]["events"][0]["result"], "Success", "{v}");

    // Bad bodies: 400; wrong state: 409.
    for body in [
        json!({"changePassword": {}}),
        json!({"changePassword": {"adminPass": 1}}),
        json!({"changePassword": {"adminPass": "x", "extra": 1}}),
    ] {
        h.action(ALICE, &id, body, 400).await;
    }
    h.action(ALICE, &id, json!({"pause": null}), 202).await;
    h.wait(&id, "PAUSED").await;
    let v = h
        .action(
            ALICE,
            &id,
            json!({"changePassword": {"adminPass": "x"}}),
            409,
        )
        .await;
    assert!(
        v["conflictingRequest"]["message"]
            .as_str()
            .unwrap()
            .contains("Cannot 'changePassword' instance"),
        "{v}"
    );
    // The password is nowhere in the log.
    let (code, v) = h
        .req(
            "admin:admin",
            reqwest::Method::GET,
            &format!("/../v1/instances/{id}/events"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert!(!v.to_string().contains(SECRET));
    h.stack.stop().await;
}
