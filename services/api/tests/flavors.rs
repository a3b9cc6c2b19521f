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

fn ids(r: &Resp) -> Vec<String> {
    let mut v: Vec<String> = r.body["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn private_flavors_are_seen_by_the_projects_on_their_access_list() {
    let s = start().await;
    s.flavor("pub", "public", 64, 0).await;
    let r = s
        .post(
            "/v2.1/flavors",
            ADMIN,
            None,
            json!({"flavor": {"name": "private", "ram": 64, "vcpus": 1, "disk": 0, "id": "10", "os-flavor-access:is_public": false}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // Nobody on the list yet: a 404 to alice (p1), an empty list to the admin.
    assert_eq!(s.get("/v2.1/flavors/10", ALICE, None).await.status, 404);
    assert_eq!(ids(&s.get("/v2.1/flavors", ALICE, None).await), ["pub"]);
    let r = s
        .get("/v2.1/flavors/10/os-flavor-access", ADMIN, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"flavor_access": []}));
    // Only admins read or change access lists.
    let r = s
        .get("/v2.1/flavors/10/os-flavor-access", ALICE, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let add = json!({"addTenantAccess": {"tenant": "p1"}});
    let r = s
        .post("/v2.1/flavors/10/action", ALICE, None, add.clone())
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let r = s
        .post("/v2.1/flavors/10/action", ADMIN, None, add.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"flavor_access": [{"flavor_id": "10", "tenant_id": "p1"}]})
    );
    let r = s
        .post("/v2.1/flavors/10/action", ADMIN, None, add.clone())
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.body["conflictingRequest"]["message"],
        "Flavor access already exists for flavor 10 and project p1 combination."
    );

    // Alice's project sees it (show, lists, extra specs, boot); bob's does not.
    let r = s.get("/v2.1/flavors/10", ALICE, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["flavor"]["os-flavor-access:is_public"], json!(false));
    assert_eq!(
        ids(&s.get("/v2.1/flavors", ALICE, None).await),
        ["10", "pub"]
    );
    assert_eq!(
        ids(&s.get("/v2.1/flavors/detail", ALICE, None).await),
        ["10", "pub"]
    );
    assert_eq!(
        s.get("/v2.1/flavors/10/os-extra_specs", ALICE, None)
            .await
            .status,
        200
    );
    s.server(ALICE, "on-private", "10").await;
    assert_eq!(s.get("/v2.1/flavors/10", BOB, None).await.status, 404);
    assert_eq!(ids(&s.get("/v2.1/flavors", BOB, None).await), ["pub"]);
    let r = s
        .post(
            "/v2.1/servers",
            BOB,
            Some("2.37"),
            json!({"server": {"name": "x", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b", "flavorRef": "10", "networks": "none"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // The admin (project adminproj, not on the list) lists public ones by default,
    // private ones with is_public=false, all with is_public=None.
    assert_eq!(ids(&s.get("/v2.1/flavors", ADMIN, None).await), ["pub"]);
    assert_eq!(
        ids(&s.get("/v2.1/flavors?is_public=false", ADMIN, None).await),
        ["10"]
    );
    assert_eq!(
        ids(&s.get("/v2.1/flavors?is_public=None", ADMIN, None).await),
        ["10", "pub"]
    );

    let remove = json!({"removeTenantAccess": {"tenant": "p1"}});
    let r = s
        .post("/v2.1/flavors/10/action", ADMIN, None, remove.clone())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body, json!({"flavor_access": []}));
    let r = s.post("/v2.1/flavors/10/action", ADMIN, None, remove).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body["itemNotFound"]["message"],
        "Flavor access not found for 10 / p1 combination."
    );
    assert_eq!(s.get("/v2.1/flavors/10", ALICE, None).await.status, 404);

    // Public flavors have no access list; from 2.7 access cannot be added to them.
    let r = s
        .get("/v2.1/flavors/pub/os-flavor-access", ADMIN, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body["itemNotFound"]["message"],
        "Access list not available for public flavors."
    );
    let r = s
        .post("/v2.1/flavors/pub/action", ADMIN, Some("2.7"), add.clone())
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.body["conflictingRequest"]["message"],
        "Can not add access to a public flavor."
    );
    let r = s
        .post("/v2.1/flavors/pub/action", ADMIN, Some("2.6"), add)
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Bad bodies and unknown flavors append nothing.
    let before = s.positions().await;
    for (body, code) in [
        (json!({"addTenantAccess": {"tenant": ""}}), 400),
        (json!({"addTenantAccess": {"tenant": "p1", "x": 1}}), 400),
        (json!({"addTenantAccess": {}}), 400),
        (json!({"nope": {}}), 400),
    ] {
        let r = s
            .post("/v2.1/flavors/10/action", ADMIN, None, body.clone())
            .await;
        assert_eq!(r.status.as_u16(), code, "{body}: {:?}", r.body);
    }
    let r = s
        .post(
            "/v2.1/flavors/missing/action",
            ADMIN,
            None,
            json!({"addTenantAccess": {"tenant": "p1"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body["itemNotFound"]["message"],
        "Flavor missing could not be found."
    );
    assert_eq!(s.positions().await, before);

    // A new lifetime of the id starts with an empty list.
    assert_eq!(s.delete("/v2.1/flavors/10", ADMIN, None).await.status, 202);
    let r = s
        .post(
            "/v2.1/flavors",
            ADMIN,
            None,
            json!({"flavor": {"name": "private", "ram": 64, "vcpus": 1, "disk": 0, "id": "10", "os-flavor-access:is_public": false}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s
        .get("/v2.1/flavors/10/os-flavor-access", ADMIN, None)
        .await;
    assert_eq!(r.body, json!({"flavor_access": []}));
}

/// Of many concurrent creates of one name (different ids), exactly one succeeds; the
/// name is free again once that flavor is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_name_make_one_flavor() {
    let s = std::sync::Arc::new(start().await);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.post(
                "/v2.1/flavors",
                ADMIN,
                None,
                json!({"flavor": {"name": "racy", "ram": 64, "vcpus": 1, "disk": 0, "id": format!("r{i}")}}),
            )
            .await
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => ok.push(r.body["flavor"]["id"].as_str().unwrap().to_string()),
            409 => assert_eq!(
                r.body["conflictingRequest"]["message"],
                "Flavor with name racy already exists."
            ),
            other => panic!("{other}: {:?}", r.body),
        }
    }
    assert_eq!(ok.len(), 1, "{ok:?}");
    let r = s.get("/v2.1/flavors?is_public=None", ADMIN, None).await;
    let named: Vec<_> = r.body["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "racy")
        .collect();
    assert_eq!(named.len(), 1);

    // Deleted: the name is free at once, for another id.
    let path = format!("/v2.1/flavors/{}", ok[0]);
    assert_eq!(s.delete(&path, ADMIN, None).await.status, 202);
    let r = s
        .post(
            "/v2.1/flavors",
            ADMIN,
            None,
            json!({"flavor": {"name": "racy", "ram": 64, "vcpus": 1, "disk": 0, "id": "again"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // A refused create (its id exists) holds no name.
    let r = s
        .post(
            "/v2.1/flavors",
            ADMIN,
            None,
            json!({"flavor": {"name": "other", "ram": 64, "vcpus": 1, "disk": 0, "id": "again"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    s.flavor("third", "other", 64, 0).await;
}

/// From 2.86 known extra specs are validated (unknown keys of known namespaces too);
/// other namespaces, and every key before 2.86, are taken as they are.
#[tokio::test]
async fn extra_specs_are_validated_from_2_86() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 64, 0).await;
    let post = |v: &'static str, specs: serde_json::Value| {
        let s = &s;
        async move {
            s.post(
                "/v2.1/flavors/1/os-extra_specs",
                ADMIN,
                Some(v),
                json!({ "extra_specs": specs }),
            )
            .await
        }
    };
    let before = s.positions().await;
    for (specs, message) in [
        (
            json!({"hw:cpu_policy": "sometimes"}),
            "Validation failed; 'sometimes' is not one of: dedicated, shared, mixed.",
        ),
        (
            json!({"hw:numa_nodes": 0}),
            "Validation failed; '0' is less than the min value of '1'.",
        ),
        (
            json!({"hw:no_such_spec": "1"}),
            "Validation failed; extra spec 'hw:no_such_spec' does not appear to be a valid extra spec.",
        ),
        (
            json!({"trait:NOT_A_TRAIT": "required"}),
            "Validation failed; extra spec 'trait:NOT_A_TRAIT' does not appear to be a valid extra spec.",
        ),
    ] {
        let r = post("2.86", specs.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{specs}");
        assert_eq!(r.body["badRequest"]["message"], message, "{specs}");
    }
    let r = s
        .put(
            "/v2.1/flavors/1/os-extra_specs/hw:cpu_policy",
            ADMIN,
            Some("2.86"),
            json!({"hw:cpu_policy": "sometimes"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(s.positions().await, before);

    let r = post(
        "2.86",
        json!({"hw:cpu_policy": "dedicated", "trait:HW_CPU_X86_AVX2": "required",
            "resources1:VCPU": "2", "my_cloud:anything": "goes", "plain": "x"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = post(
        "2.85",
        json!({"hw:cpu_policy": "sometimes", "hw:nope": "1"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Unsetting one answers 200 as Nova (tempest checks), a missing key 404.
    let r = s
        .delete("/v2.1/flavors/1/os-extra_specs/hw:nope", ADMIN, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s
        .delete("/v2.1/flavors/1/os-extra_specs/hw:nope", ADMIN, None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{:?}", r.body);
}
