//! os-aggregates and os-availability-zone over real HTTP: Nova's shapes per
//! microversion, its status codes and messages, refusals that append nothing, and the
//! zones that server create, the server view and the zone listings derive from the
//! aggregates.

mod common;

use common::{Stack, ADMIN, ALICE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";

async fn create(s: &Stack, name: &str, az: Option<&str>) -> Value {
    let mut agg = json!({"name": name});
    if let Some(z) = az {
        agg["availability_zone"] = json!(z);
    }
    let r = s
        .post(
            "/v2.1/os-aggregates",
            ADMIN,
            None,
            json!({"aggregate": agg}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body["aggregate"].clone()
}

async fn action(s: &Stack, id: &Value, body: Value) -> common::Resp {
    s.post(
        &format!("/v2.1/os-aggregates/{id}/action"),
        ADMIN,
        None,
        body,
    )
    .await
}

/// A refused request: its status, Nova's fault message, and nothing appended.
async fn refused(
    s: &Stack,
    method: Method,
    path: &str,
    body: Option<Value>,
    want: StatusCode,
    msg: &str,
) {
    let before = s.positions().await;
    let r = s.call(method, path, Some(ADMIN), None, body).await;
    assert_eq!(r.status, want, "{path}: {:?}", r.body);
    let fault = r.body.as_object().and_then(|o| o.values().next()).cloned();
    assert_eq!(
        fault.as_ref().and_then(|f| f["message"].as_str()),
        Some(msg),
        "{path}: {:?}",
        r.body
    );
    assert_eq!(before, s.positions().await, "a refused request appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_lifecycle_with_novas_shapes_and_errors() {
    let s = common::start().await;
    s.register_host("host1").await;
    s.register_host("host2").await;

    // Create: 200, brief shape (no hosts / metadata), no uuid before 2.41.
    let a = create(&s, "agg1", Some("london")).await;
    let keys: Vec<&String> = a.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "availability_zone",
            "created_at",
            "deleted",
            "deleted_at",
            "id",
            "name",
            "updated_at"
        ]
    );
    assert_eq!(a["availability_zone"], "london");
    assert_eq!(a["deleted"], false);
    assert!(a["updated_at"].is_null());
    let id = a["id"].clone();
    assert_eq!(id, 1);
    let created = a["created_at"].as_str().unwrap();
    assert!(
        !created.ends_with('Z') && created.contains('.'),
        "{created}"
    );

    // 2.41: uuid everywhere.
    let r = s.get("/v2.1/os-aggregates/1", ADMIN, Some("2.41")).await;
    assert_eq!(r.status, StatusCode::OK);
    let shown = &r.body["aggregate"];
    assert!(uuid::Uuid::parse_str(shown["uuid"].as_str().unwrap()).is_ok());
    assert_eq!(shown["hosts"], json!([]));
    assert_eq!(shown["metadata"], json!({"availability_zone": "london"}));
    let r = s.get("/v2.1/os-aggregates/1", ADMIN, None).await;
    assert!(r.body["aggregate"].get("uuid").is_none());

    // Duplicate name: 409.
    refused(
        &s,
        Method::POST,
        "/v2.1/os-aggregates",
        Some(json!({"aggregate": {"name": "agg1"}})),
        StatusCode::CONFLICT,
        "Aggregate agg1 already exists.",
    )
    .await;
    // Schema: unknown keys, bad names, ':' in a zone.
    refused(
        &s,
        Method::POST,
        "/v2.1/os-aggregates",
        Some(json!({"aggregate": {"name": "x", "colour": "red"}})),
        StatusCode::BAD_REQUEST,
        "Additional properties are not allowed ('colour' was unexpected)",
    )
    .await;
    refused(
        &s,
        Method::POST,
        "/v2.1/os-aggregates",
        Some(json!({"aggregate": {"name": " x"}})),
        StatusCode::BAD_REQUEST,
        "An invalid 'name' value was provided. The name must be: printable characters. Can not start or end with whitespace.",
    )
    .await;
    refused(
        &s,
        Method::POST,
        "/v2.1/os-aggregates",
        Some(json!({"aggregate": {"name": "x", "availability_zone": "a:b"}})),
        StatusCode::BAD_REQUEST,
        "Invalid input for field/attribute availability_zone. Value: \"a:b\". \"a:b\" is not valid under any of the given schemas",
    )
    .await;
    // Unknown / malformed ids.
    refused(
        &s,
        Method::GET,
        "/v2.1/os-aggregates/99",
        None,
        StatusCode::NOT_FOUND,
        "Aggregate 99 could not be found.",
    )
    .await;
    refused(
        &s,
        Method::GET,
        "/v2.1/os-aggregates/abc",
        None,
        StatusCode::BAD_REQUEST,
        "Invalid input received: id must be an integer",
    )
    .await;

    // Hosts: unknown 404, add, twice 409.
    refused(
        &s,
        Method::POST,
        "/v2.1/os-aggregates/1/action",
        Some(json!({"add_host": {"host": "ghost"}})),
        StatusCode::NOT_FOUND,
        "Compute host ghost could not be found.",
    )
    .await;
    let r = action(&s, &id, json!({"add_host": {"host": "host1"}})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["aggregate"]["hosts"], json!(["host1"]));
    assert!(r.body["aggregate"]["updated_at"].is_null());
    refused(
        &s,
        Method::POST,
        "/v2.1/os-aggregates/1/action",
        Some(json!({"add_host": {"host": "host1"}})),
        StatusCode::CONFLICT,
        "Aggregate 1 already has host host1.",
    )
    .await;
    // A host in two zones: 409 as Nova's add_host.
    let b = create(&s, "agg2", Some("paris")).await;
    refused(
        &s,
        Method::POST,
        &format!("/v2.1/os-aggregates/{}/action", b["id"]),
        Some(json!({"add_host": {"host": "host1"}})),
        StatusCode::CONFLICT,
        "Cannot add host to aggregate 2. Reason: One or more hosts already in availability zone(s) ['london'].",
    )
    .await;
    refused(
        &s,
        Method::POST,
        "/v2.1/os-aggregates/1/action",
        Some(json!({"fly": {}})),
        StatusCode::BAD_REQUEST,
        "There is no such action: fly",
    )
    .await;

    // Metadata: set, null deletes; the zone is a metadata key.
    let r = action(
        &s,
        &id,
        json!({"set_metadata": {"metadata": {"k": "v", "x": "y"}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["aggregate"]["updated_at"].is_string());
    let r = action(&s, &id, json!({"set_metadata": {"metadata": {"x": null}}})).await;
    assert_eq!(
        r.body["aggregate"]["metadata"],
        json!({"availability_zone": "london", "k": "v"})
    );
    refused(
        &s,
        Method::POST,
        "/v2.1/os-aggregates/1/action",
        Some(json!({"set_metadata": {"metadata": {"bad/key": "v"}}})),
        StatusCode::BAD_REQUEST,
        "Invalid input for field/attribute metadata. Value: {\"bad/key\":\"v\"}. 'bad/key' does not match any of the regexes: '^[a-zA-Z0-9-_:. ]{1,255}$'",
    )
    .await;

    // Update: rename and re-zone; the other's name is taken.
    let r = s
        .call(
            Method::PUT,
            "/v2.1/os-aggregates/1",
            Some(ADMIN),
            Some("2.41"),
            Some(json!({"aggregate": {"name": "newname", "availability_zone": "nova2"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["aggregate"]["name"], "newname");
    assert_eq!(r.body["aggregate"]["availability_zone"], "nova2");
    assert_eq!(
        r.body["aggregate"]["metadata"]["availability_zone"],
        "nova2"
    );
    assert!(r.body["aggregate"]["uuid"].is_string());
    refused(
        &s,
        Method::PUT,
        "/v2.1/os-aggregates/1",
        Some(json!({"aggregate": {"name": "agg2"}})),
        StatusCode::CONFLICT,
        "Aggregate agg2 already exists.",
    )
    .await;
    refused(
        &s,
        Method::PUT,
        "/v2.1/os-aggregates/1",
        Some(json!({"aggregate": {"availability_zone": null}})),
        StatusCode::BAD_REQUEST,
        "Cannot update aggregate 1. Reason: Aggregate newname does not support empty named availability zone.",
    )
    .await;

    // Delete: refused while it has hosts; remove_host of a host not in it is 404.
    refused(
        &s,
        Method::DELETE,
        "/v2.1/os-aggregates/1",
        None,
        StatusCode::BAD_REQUEST,
        "Cannot remove host from aggregate 1. Reason: Host aggregate is not empty.",
    )
    .await;
    refused(
        &s,
        Method::POST,
        "/v2.1/os-aggregates/1/action",
        Some(json!({"remove_host": {"host": "host2"}})),
        StatusCode::NOT_FOUND,
        "Cannot remove host host2 in aggregate 1",
    )
    .await;
    let r = action(&s, &id, json!({"remove_host": {"host": "host1"}})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["aggregate"]["hosts"], json!([]));
    let r = s
        .call(
            Method::DELETE,
            "/v2.1/os-aggregates/1",
            Some(ADMIN),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s.get("/v2.1/os-aggregates", ADMIN, Some("2.41")).await;
    let names: Vec<&str> = r.body["aggregates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["agg2"]);
    refused(
        &s,
        Method::DELETE,
        "/v2.1/os-aggregates/1",
        None,
        StatusCode::NOT_FOUND,
        "Aggregate 1 could not be found.",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_may_not_touch_aggregates() {
    let s = common::start().await;
    for (m, p, b) in [
        (Method::GET, "/v2.1/os-aggregates", None),
        (
            Method::POST,
            "/v2.1/os-aggregates",
            Some(json!({"aggregate": {"name": "a"}})),
        ),
        (Method::GET, "/v2.1/os-availability-zone/detail", None),
    ] {
        let before = s.positions().await;
        let r = s.call(m, p, Some(ALICE), None, b).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{p}: {:?}", r.body);
        assert_eq!(before, s.positions().await);
    }
    let r = s.get("/v2.1/os-availability-zone", ALICE, None).await;
    assert_eq!(r.status, StatusCode::OK);
}

fn zones(body: &Value) -> Vec<(String, Value)> {
    body["availabilityZoneInfo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| {
            (
                z["zoneName"].as_str().unwrap().to_string(),
                z["hosts"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_come_from_aggregates_and_servers_land_in_them() {
    let s = common::start().await;
    // No compute host: no zone at all (Nova lists zones of services).
    let r = s.get("/v2.1/os-availability-zone", ALICE, None).await;
    assert_eq!(r.body, json!({"availabilityZoneInfo": []}));
    let host1 = s.register_host("host1").await;
    s.register_host("host2").await;
    s.flavor("f1", "m1.tiny", 512, 1).await;
    let r = s.get("/v2.1/os-availability-zone", ALICE, None).await;
    assert_eq!(
        r.body,
        json!({"availabilityZoneInfo": [{"zoneName": "nova", "zoneState": {"available": true}, "hosts": null}]})
    );
    // An unknown zone is refused at create.
    let server = |az: &str| json!({"server": {"name": "vm", "imageRef": IMAGE, "flavorRef": "f1", "networks": "none", "availability_zone": az}});
    let before = s.positions().await;
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.37"), server("az1"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(
        r.body["badRequest"]["message"],
        "The requested availability zone is not available"
    );
    assert_eq!(before, s.positions().await);

    // host1 goes to az1 through an aggregate.
    let a = create(&s, "agg1", Some("az1")).await;
    let r = action(&s, &a["id"], json!({"add_host": {"host": "host1"}})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s.get("/v2.1/os-availability-zone", ALICE, None).await;
    let names: Vec<String> = zones(&r.body).into_iter().map(|z| z.0).collect();
    assert_eq!(names, ["az1", "nova"]);
    let r = s
        .get("/v2.1/os-availability-zone/detail", ADMIN, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let detail = zones(&r.body);
    assert_eq!(detail[0].0, "az1");
    let svc = &detail[0].1["host1"]["nova-compute"];
    assert_eq!(svc["active"], true);
    assert_eq!(svc["available"], true);
    assert!(detail[0].1.get("host2").is_none());
    assert!(detail[1].1.get("host2").is_some());

    // A server asking for az1 is accepted and shows the zone of the host it is on.
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.37"), server("az1"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    s.make_active(&id, &host1).await;
    let r = s.get(&format!("/v2.1/servers/{id}"), ALICE, None).await;
    assert_eq!(r.body["server"]["OS-EXT-AZ:availability_zone"], "az1");

    // host1 now has an instance: it cannot leave az1, nor can az1 be renamed.
    refused(
        &s,
        Method::PUT,
        &format!("/v2.1/os-aggregates/{}", a["id"]),
        Some(json!({"aggregate": {"availability_zone": "az2"}})),
        StatusCode::BAD_REQUEST,
        "Cannot update aggregate 1. Reason: One or more hosts contain instances in this zone.",
    )
    .await;
    let before = s.positions().await;
    let r = action(&s, &a["id"], json!({"remove_host": {"host": "host1"}})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{:?}", r.body);
    assert!(r.body["conflictingRequest"]["message"]
        .as_str()
        .unwrap()
        .contains("would change from 'az1' to 'None' but the host already has 1 instance(s)"));
    assert_eq!(before, s.positions().await);

    // Once host2 joins az1 too, `nova` has no host left and is no longer a zone.
    action(&s, &a["id"], json!({"add_host": {"host": "host2"}})).await;
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.37"), server("nova"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    // A forced host skips the zone check (admin only).
    let r = s
        .post("/v2.1/servers", ADMIN, Some("2.37"), server("nova:host2"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
}

/// POSTs `body` to `path` as admin from `n` concurrent tasks; the statuses.
async fn race(
    s: &Stack,
    path: impl Fn(usize) -> String,
    body: impl Fn(usize) -> Value,
    n: usize,
) -> Vec<StatusCode> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let (client, url, b) = (s.client.clone(), format!("{}{}", s.base, path(i)), body(i));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("X-Auth-Token", ADMIN)
                .json(&b)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// The rules spanning aggregates hold under concurrency: of 16 racing creates of one
/// name exactly one is made, and of 16 racing adds of one host to aggregates of 16
/// different zones exactly one succeeds (one subject, decided on the whole set, OCC).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_commands_keep_names_unique_and_one_zone_per_host() {
    let s = common::start().await;
    s.register_host("host1").await;
    let statuses = race(
        &s,
        |_| "/v2.1/os-aggregates".into(),
        |_| json!({"aggregate": {"name": "same"}}),
        16,
    )
    .await;
    assert_eq!(
        statuses.iter().filter(|c| **c == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|c| *c == StatusCode::OK || *c == StatusCode::CONFLICT),
        "{statuses:?}"
    );

    let mut ids = Vec::new();
    for i in 0..16 {
        ids.push(create(&s, &format!("z{i}"), Some(&format!("zone{i}"))).await["id"].clone());
    }
    let statuses = race(
        &s,
        |i| format!("/v2.1/os-aggregates/{}/action", ids[i]),
        |_| json!({"add_host": {"host": "host1"}}),
        16,
    )
    .await;
    assert_eq!(
        statuses.iter().filter(|c| **c == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    let r = s.get("/v2.1/os-aggregates", ADMIN, None).await;
    let holding = r.body["aggregates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["hosts"] == json!(["host1"]))
        .count();
    assert_eq!(holding, 1);
    let zones = s.get("/v2.1/os-availability-zone", ADMIN, None).await;
    assert_eq!(
        zones.body["availabilityZoneInfo"].as_array().unwrap().len(),
        1
    );
}
