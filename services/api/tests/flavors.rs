//! Flavors through the HTTP API: ids sent as JSON numbers, private flavors and their
//! access lists, extra-spec validation, and atomic name uniqueness.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_numeric_id_is_stored_as_its_text() {
    let s = start().await;
    let r = s
        .post(
            "/v2.1/flavors",
            ADMIN,
            None,
            json!({"flavor": {"name": "num", "ram": 64, "vcpus": 1, "disk": 0, "id": 42}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["flavor"]["id"], json!("42"));
    let r = s.get("/v2.1/flavors/42", ALICE, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["flavor"]["name"], "num");
    // The same id as a string is the same flavor.
    let r = s
        .post(
            "/v2.1/flavors",
            ADMIN,
            None,
            json!({"flavor": {"name": "other", "ram": 64, "vcpus": 1, "disk": 0, "id": "42"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.body["conflictingRequest"]["message"],
        "Flavor with ID 42 already exists."
    );
}
