//! os-services, os-hypervisors and os-hosts over HTTP: shapes per microversion, the
//! service status changes as host events (the scheduler's input), deletion refused while
//! a host has instances, Nova's refusals (which append nothing), and admin-only access.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn put(s: &Stack, path: &str, v: &str, body: Value) -> Resp {
    s.call(Method::PUT, path, Some(ADMIN), Some(v), Some(body))
        .await
}

fn names(v: &Value, key: &str, field: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap().to_string())
        .collect()
}

/// Registers `names` and waits until the world shows them (host commands do not wait).
async fn hosts(s: &Stack, names: &[&str]) -> domain::HostName {
    let mut first = None;
    for n in names {
        let h = s.register_host(n).await;
        first.get_or_insert(h);
    }
    let ok = s
        .engine
        .world()
        .wait_until(std::time::Duration::from_secs(5), |v| {
            names.iter().all(|n| {
                v.hosts()
                    .values()
                    .any(|r| r.state.spec.name.as_str() == *n && !r.state.service.deleted)
            })
        })
        .await;
    assert!(ok, "hosts never applied");
    first.unwrap()
}

/// A refused request appends nothing.
async fn refused(
    s: &Stack,
    r: impl std::future::Future<Output = Resp>,
    status: StatusCode,
    msg: &str,
) {
    let before = s.positions().await;
    let r = r.await;
    assert_eq!(r.status, status, "{:?}", r.body);
    let text = r.body.to_string();
    assert!(text.contains(msg), "{msg:?} not in {text}");
    assert_eq!(before, s.positions().await, "a refused request appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_list_update_and_shapes() {
    let s = start().await;
    hosts(&s, &["host1", "host2"]).await;

    let r = s.get("/v2.1/os-services", ADMIN, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(names(&r.body, "services", "host"), ["host1", "host2"]);
    let svc = &r.body["services"][0];
    assert_eq!(svc["binary"], "nova-compute");
    assert_eq!(
        (svc["status"].as_str(), svc["state"].as_str()),
        (Some("enabled"), Some("up"))
    );
    assert!(svc["id"].is_u64() && svc.get("forced_down").is_none());
    assert_eq!(svc["zone"], "nova");
    let r = s.get("/v2.1/os-services", ADMIN, Some("2.53")).await;
    let id1 = r.body["services"][0]["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id1).is_ok());
    assert_eq!(r.body["services"][0]["forced_down"], false);

    // Filters.
    let r = s.get("/v2.1/os-services?host=host2", ADMIN, None).await;
    assert_eq!(names(&r.body, "services", "host"), ["host2"]);
    let r = s
        .get("/v2.1/os-services?binary=nova-scheduler", ADMIN, None)
        .await;
    assert_eq!(r.body["services"], json!([]));
    let r = s
        .get(
            "/v2.1/os-services?binary=nova-compute&host=host1",
            ADMIN,
            None,
        )
        .await;
    assert_eq!(names(&r.body, "services", "host"), ["host1"]);

    // Legacy actions.
    let body = json!({"host": "host1", "binary": "nova-compute", "disabled_reason": "maint"});
    let r = put(&s, "/v2.1/os-services/disable-log-reason", "2.1", body).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"service": {"host": "host1", "binary": "nova-compute", "status": "disabled", "disabled_reason": "maint"}})
    );
    let r = s.get("/v2.1/os-services?host=host1", ADMIN, None).await;
    assert_eq!(r.body["services"][0]["status"], "disabled");
    assert_eq!(r.body["services"][0]["disabled_reason"], "maint");
    let h = domain::HostName::new("host1").unwrap();
    assert!(!s
        .engine
        .world()
        .read()
        .hosts()
        .values()
        .find(|r| r.state.spec.name == h)
        .unwrap()
        .state
        .accepts_builds());
    let r = put(
        &s,
        "/v2.1/os-services/enable",
        "2.1",
        json!({"host": "host1", "binary": "nova-compute"}),
    )
    .await;
    assert_eq!(r.body["service"]["status"], "enabled");
    let r = s.get("/v2.1/os-services?host=host1", ADMIN, None).await;
    assert_eq!(r.body["services"][0]["disabled_reason"], Value::Null);

    let fd = json!({"host": "host2", "binary": "nova-compute", "forced_down": true});
    refused(
        &s,
        put(&s, "/v2.1/os-services/force-down", "2.10", fd.clone()),
        StatusCode::BAD_REQUEST,
        "forced_down",
    )
    .await;
    let r = put(&s, "/v2.1/os-services/force-down", "2.11", fd).await;
    assert_eq!(
        r.body,
        json!({"service": {"host": "host2", "binary": "nova-compute", "forced_down": true}})
    );
    let r = s
        .get("/v2.1/os-services?host=host2", ADMIN, Some("2.11"))
        .await;
    assert_eq!(r.body["services"][0]["state"], "down");
    assert_eq!(r.body["services"][0]["forced_down"], true);

    // Nova's refusals.
    let hb = |host: &str, binary: &str| json!({"host": host, "binary": binary});
    refused(&s, put(&s, "/v2.1/os-services/disable", "2.1", hb("host1", "nova-scheduler")), StatusCode::BAD_REQUEST,
        "Updating a nova-scheduler service is not supported. Only nova-compute services can be updated.").await;
    refused(
        &s,
        put(
            &s,
            "/v2.1/os-services/disable",
            "2.1",
            hb("nope", "nova-compute"),
        ),
        StatusCode::NOT_FOUND,
        "Host 'nope' is not mapped to any cell",
    )
    .await;
    refused(
        &s,
        put(
            &s,
            "/v2.1/os-services/disable-log-reason",
            "2.1",
            hb("host1", "nova-compute"),
        ),
        StatusCode::BAD_REQUEST,
        "Missing disabled reason field",
    )
    .await;
    refused(
        &s,
        put(
            &s,
            "/v2.1/os-services/force-down",
            "2.10",
            hb("host1", "nova-compute"),
        ),
        StatusCode::NOT_FOUND,
        "Unknown action",
    )
    .await;
    refused(
        &s,
        put(
            &s,
            "/v2.1/os-services/disable",
            "2.1",
            json!({"host": "host1", "binary": "nova-compute", "x": 1}),
        ),
        StatusCode::BAD_REQUEST,
        "Additional properties are not allowed",
    )
    .await;

    // 2.53: by id.
    let path = format!("/v2.1/os-services/{id1}");
    let r = put(
        &s,
        &path,
        "2.53",
        json!({"status": "disabled", "disabled_reason": "r53"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["service"]["id"], id1.as_str());
    assert_eq!(r.body["service"]["status"], "disabled");
    assert_eq!(r.body["service"]["disabled_reason"], "r53");
    let r = put(
        &s,
        &path,
        "2.53",
        json!({"status": "enabled", "forced_down": false}),
    )
    .await;
    assert_eq!(r.body["service"]["status"], "enabled");
    refused(
        &s,
        put(
            &s,
            &path,
            "2.53",
            json!({"status": "enabled", "disabled_reason": "x"}),
        ),
        StatusCode::BAD_REQUEST,
        "Specifying 'disabled_reason' with status 'enabled' is invalid.",
    )
    .await;
    refused(
        &s,
        put(&s, &path, "2.53", json!({"disabled_reason": "x"})),
        StatusCode::BAD_REQUEST,
        "No updates were requested. Fields 'status' or 'forced_down' should be specified.",
    )
    .await;
    refused(
        &s,
        put(
            &s,
            "/v2.1/os-services/abc",
            "2.53",
            json!({"status": "enabled"}),
        ),
        StatusCode::BAD_REQUEST,
        "Invalid uuid abc",
    )
    .await;
    let other = uuid::Uuid::new_v4();
    refused(
        &s,
        put(
            &s,
            &format!("/v2.1/os-services/{other}"),
            "2.53",
            json!({"status": "enabled"}),
        ),
        StatusCode::NOT_FOUND,
        &format!("Service {other} could not be found."),
    )
    .await;
    refused(
        &s,
        put(&s, &path, "2.53", json!({"status": "off"})),
        StatusCode::BAD_REQUEST,
        "status",
    )
    .await;

    // Admin only.
    let r = s.get("/v2.1/os-services", ALICE, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// The hosts of aggregate `agg`, as os-aggregates shows them.
async fn agg_hosts(s: &Stack, agg: &Value) -> Vec<String> {
    let r = s
        .get(&format!("/v2.1/os-aggregates/{agg}"), ADMIN, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    serde_json::from_value(r.body["aggregate"]["hosts"].clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_compute_service() {
    let s = start().await;
    let host = hosts(&s, &["host1", "host2"]).await;
    // host1 in a zone aggregate and, with host2, in a plain one.
    let mut aggs = Vec::new();
    for (name, zone, members) in [
        ("agg-az", Some("az1"), &["host1"][..]),
        ("agg-plain", None, &["host1", "host2"][..]),
    ] {
        let r = s
            .post(
                "/v2.1/os-aggregates",
                ADMIN,
                None,
                json!({"aggregate": {"name": name, "availability_zone": zone}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let agg = r.body["aggregate"]["id"].clone();
        for h in members {
            let r = s
                .post(
                    &format!("/v2.1/os-aggregates/{agg}/action"),
                    ADMIN,
                    None,
                    json!({"add_host": {"host": h}}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        }
        aggs.push(agg);
    }
    s.flavor("f1", "m1.tiny", 512, 1).await;
    let server = s.server(ALICE, "vm", "f1").await;
    s.make_active(&server, &host).await;
    let r = s
        .get("/v2.1/os-services?host=host1", ADMIN, Some("2.53"))
        .await;
    let id = r.body["services"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/v2.1/os-services/{id}");
    let del = || s.call(Method::DELETE, &path, Some(ADMIN), Some("2.53"), None);
    refused(&s, del(), StatusCode::CONFLICT,
        "Unable to delete compute service that is hosting instances. Migrate or delete the instances first.").await;
    refused(
        &s,
        s.call(
            Method::DELETE,
            "/v2.1/os-services/x",
            Some(ADMIN),
            Some("2.53"),
            None,
        ),
        StatusCode::BAD_REQUEST,
        "Invalid uuid x",
    )
    .await;
    refused(
        &s,
        s.call(
            Method::DELETE,
            "/v2.1/os-services/x",
            Some(ADMIN),
            Some("2.52"),
            None,
        ),
        StatusCode::BAD_REQUEST,
        "id must be an integer",
    )
    .await;
    refused(
        &s,
        s.call(
            Method::DELETE,
            "/v2.1/os-services/7",
            Some(ADMIN),
            Some("2.52"),
            None,
        ),
        StatusCode::NOT_FOUND,
        "Service 7 not found.",
    )
    .await;

    let r = s
        .call(
            Method::DELETE,
            &format!("/v2.1/servers/{server}"),
            Some(ALICE),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // Drive the delete to completion as compute would.
    let iid = domain::InstanceId::parse(&server).unwrap();
    let ok = s
        .engine
        .world()
        .wait_until(std::time::Duration::from_secs(1), |v| {
            v.instance(&iid).is_none()
        })
        .await;
    if !ok {
        let op = s
            .engine
            .world()
            .read()
            .instance(&iid)
            .unwrap()
            .op
            .unwrap()
            .id;
        s.engine
            .instance(
                iid,
                domain::instance::InstanceCommand::Complete {
                    op,
                    task: domain::TaskState::Deleting,
                },
                &svc_ctx(),
                &engine::Meta::default(),
            )
            .await
            .unwrap();
    }
    // The refusals above left host1 in its aggregates.
    assert_eq!(agg_hosts(&s, &aggs[0]).await, ["host1"]);
    let r = del().await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = s.get("/v2.1/os-services", ADMIN, Some("2.53")).await;
    assert_eq!(names(&r.body, "services", "host"), ["host2"]);
    // As in Nova, the deleted service's host left every aggregate it was in.
    assert!(agg_hosts(&s, &aggs[0]).await.is_empty());
    assert_eq!(agg_hosts(&s, &aggs[1]).await, ["host2"]);
    let r = s.get("/v2.1/os-hypervisors", ADMIN, Some("2.53")).await;
    assert_eq!(
        names(&r.body, "hypervisors", "hypervisor_hostname"),
        ["host2"]
    );
    refused(&s, del(), StatusCode::NOT_FOUND, "not found").await;
    // The agent starts again: a new service record, enabled, with a new id.
    hosts(&s, &["host1"]).await;
    let r = s
        .get("/v2.1/os-services?host=host1", ADMIN, Some("2.53"))
        .await;
    assert_eq!(r.body["services"][0]["status"], "enabled");
    assert_ne!(r.body["services"][0]["id"], id.as_str());
    // ... in no aggregate, so in the default zone.
    assert_eq!(r.body["services"][0]["zone"], "nova");
    assert_eq!(agg_hosts(&s, &aggs[1]).await, ["host2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypervisors_per_microversion() {
    let s = start().await;
    let host = hosts(&s, &["host1", "host2", "other"]).await;
    s.flavor("f1", "m1.tiny", 512, 1).await;
    let server = s.server(ALICE, "vm1", "f1").await;
    s.make_active(&server, &host).await;

    let r = s.get("/v2.1/os-hypervisors", ADMIN, None).await;
    assert_eq!(
        names(&r.body, "hypervisors", "hypervisor_hostname"),
        ["host1", "host2", "other"]
    );
    let h = &r.body["hypervisors"][0];
    assert!(h["id"].is_u64());
    assert_eq!(
        (h["state"].as_str(), h["status"].as_str()),
        (Some("up"), Some("enabled"))
    );
    let int_id = h["id"].as_u64().unwrap();

    let r = s
        .get("/v2.1/os-hypervisors/detail", ADMIN, Some("2.27"))
        .await;
    let d = &r.body["hypervisors"][0];
    assert!(d["cpu_info"].is_string());
    assert_eq!(d["vcpus"], 16);
    assert_eq!(d["memory_mb"], 65536);
    assert_eq!(d["running_vms"], 1);
    assert_eq!(d["hypervisor_type"], "QEMU");
    assert_eq!(d["service"]["host"], "host1");
    let r = s
        .get(
            &format!("/v2.1/os-hypervisors/{int_id}"),
            ADMIN,
            Some("2.28"),
        )
        .await;
    assert!(r.body["hypervisor"]["cpu_info"].is_object(), "{:?}", r.body);
    let r = s.get("/v2.1/os-hypervisors/abc", ADMIN, Some("2.28")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.body["itemNotFound"]["message"],
        "Hypervisor with ID 'abc' could not be found."
    );

    // Statistics: sums over every hypervisor.
    let r = s.get("/v2.1/os-hypervisors/statistics", ADMIN, None).await;
    let st = &r.body["hypervisor_statistics"];
    assert_eq!(
        (
            st["count"].as_u64(),
            st["vcpus"].as_u64(),
            st["running_vms"].as_u64()
        ),
        (Some(3), Some(48), Some(1))
    );
    assert_eq!(
        s.get("/v2.1/os-hypervisors/statistics", ADMIN, Some("2.88"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // search / servers before 2.53.
    let r = s.get("/v2.1/os-hypervisors/host/search", ADMIN, None).await;
    assert_eq!(
        names(&r.body, "hypervisors", "hypervisor_hostname"),
        ["host1", "host2"]
    );
    let r = s
        .get("/v2.1/os-hypervisors/host1/servers", ADMIN, None)
        .await;
    assert_eq!(
        r.body["hypervisors"][0]["servers"],
        json!([{"name": "vm1", "uuid": server}])
    );
    let r = s.get("/v2.1/os-hypervisors/nope/search", ADMIN, None).await;
    assert_eq!(
        r.body["itemNotFound"]["message"],
        "No hypervisor matching 'nope' could be found."
    );
    assert_eq!(
        s.get("/v2.1/os-hypervisors/host/search", ADMIN, Some("2.53"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // 2.33 paging.
    let r = s
        .get("/v2.1/os-hypervisors?limit=1", ADMIN, Some("2.33"))
        .await;
    assert_eq!(r.body["hypervisors"].as_array().unwrap().len(), 1);
    let next = r.body["hypervisors_links"][0]["href"].as_str().unwrap();
    assert!(next.ends_with(&format!("marker={int_id}")), "{next}");
    let r = s
        .get(
            &format!("/v2.1/os-hypervisors?marker={int_id}"),
            ADMIN,
            Some("2.33"),
        )
        .await;
    assert_eq!(
        names(&r.body, "hypervisors", "hypervisor_hostname"),
        ["host2", "other"]
    );
    let r = s
        .get("/v2.1/os-hypervisors?marker=99", ADMIN, Some("2.33"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // 2.53: UUIDs, pattern and with_servers.
    let r = s
        .get(
            "/v2.1/os-hypervisors?hypervisor_hostname_pattern=host&with_servers=true",
            ADMIN,
            Some("2.75"),
        )
        .await;
    assert_eq!(
        names(&r.body, "hypervisors", "hypervisor_hostname"),
        ["host1", "host2"]
    );
    assert_eq!(
        r.body["hypervisors"][0]["servers"][0]["uuid"],
        server.as_str()
    );
    assert_eq!(r.body["hypervisors"][1]["servers"], json!([]));
    let uid = r.body["hypervisors"][0]["id"].as_str().unwrap().to_string();
    let r = s
        .get(
            "/v2.1/os-hypervisors?hypervisor_hostname_pattern=host&limit=1",
            ADMIN,
            Some("2.53"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s
        .get(
            &format!("/v2.1/os-hypervisors/{uid}?with_servers=1"),
            ADMIN,
            Some("2.53"),
        )
        .await;
    assert_eq!(r.body["hypervisor"]["servers"][0]["name"], "vm1");
    assert!(uuid::Uuid::parse_str(r.body["hypervisor"]["service"]["id"].as_str().unwrap()).is_ok());
    let r = s
        .get(
            &format!("/v2.1/os-hypervisors/{int_id}"),
            ADMIN,
            Some("2.53"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body["badRequest"]["message"],
        format!("Invalid uuid {int_id}")
    );

    // 2.88: no resource fields, uptime in show.
    let r = s
        .get(&format!("/v2.1/os-hypervisors/{uid}"), ADMIN, Some("2.88"))
        .await;
    let h = &r.body["hypervisor"];
    assert!(h.get("vcpus").is_none() && h.get("cpu_info").is_none());
    assert!(h["uptime"].as_str().unwrap().contains(" up "));
    let r = s
        .get(
            &format!("/v2.1/os-hypervisors/{uid}/uptime"),
            ADMIN,
            Some("2.53"),
        )
        .await;
    assert!(r.body["hypervisor"]["uptime"].is_string());
    assert_eq!(
        s.get(
            &format!("/v2.1/os-hypervisors/{uid}/uptime"),
            ADMIN,
            Some("2.88")
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    // A disabled host shows as such.
    put(
        &s,
        "/v2.1/os-services/disable",
        "2.1",
        json!({"host": "host2", "binary": "nova-compute"}),
    )
    .await;
    let r = s
        .get(
            "/v2.1/os-hypervisors?hypervisor_hostname_pattern=host2",
            ADMIN,
            Some("2.53"),
        )
        .await;
    assert_eq!(r.body["hypervisors"][0]["status"], "disabled");
    assert_eq!(
        s.get("/v2.1/os-hypervisors", BOB, None).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn os_hosts_list_show_and_unsupported_actions() {
    let s = start().await;
    let host = hosts(&s, &["host1", "host2"]).await;
    s.flavor("f1", "m1.tiny", 512, 1).await;
    for (token, name) in [(ALICE, "a1"), (ALICE, "a2"), (BOB, "b1")] {
        let id = s.server(token, name, "f1").await;
        s.make_active(&id, &host).await;
    }
    let r = s.get("/v2.1/os-hosts", ADMIN, None).await;
    assert_eq!(
        r.body,
        json!({"hosts": [
            {"host_name": "host1", "service": "compute", "zone": "nova"},
            {"host_name": "host2", "service": "compute", "zone": "nova"},
        ]})
    );
    let r = s.get("/v2.1/os-hosts?zone=elsewhere", ADMIN, None).await;
    assert_eq!(r.body["hosts"], json!([]));
    // Disabled services are not listed (Nova filters disabled=False).
    put(
        &s,
        "/v2.1/os-services/disable",
        "2.1",
        json!({"host": "host2", "binary": "nova-compute"}),
    )
    .await;
    let r = s.get("/v2.1/os-hosts", ADMIN, None).await;
    assert_eq!(names(&r.body, "hosts", "host_name"), ["host1"]);

    let r = s.get("/v2.1/os-hosts/host1", ADMIN, None).await;
    let rows: Vec<&Value> = r.body["host"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| &x["resource"])
        .collect();
    let projects: Vec<&str> = rows
        .iter()
        .map(|r| r["project"].as_str().unwrap())
        .collect();
    assert_eq!(
        projects,
        ["(total)", "(used_now)", "(used_max)", "p1", "p2"]
    );
    assert_eq!(
        (rows[0]["cpu"].as_u64(), rows[0]["memory_mb"].as_u64()),
        (Some(16), Some(65536))
    );
    assert_eq!(rows[2]["memory_mb"], 3 * 512);
    assert_eq!(rows[3]["memory_mb"], 2 * 512);
    assert_eq!(rows[4]["cpu"], 1);
    let r = s.get("/v2.1/os-hosts/nope", ADMIN, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    for action in ["reboot", "shutdown", "startup"] {
        refused(
            &s,
            s.get(&format!("/v2.1/os-hosts/host1/{action}"), ADMIN, None),
            StatusCode::NOT_IMPLEMENTED,
            "The requested functionality is not supported.",
        )
        .await;
        refused(
            &s,
            s.get(&format!("/v2.1/os-hosts/nope/{action}"), ADMIN, None),
            StatusCode::NOT_FOUND,
            "nope",
        )
        .await;
    }
    refused(
        &s,
        put(
            &s,
            "/v2.1/os-hosts/host1",
            "2.1",
            json!({"status": "enable", "maintenance_mode": "disable"}),
        ),
        StatusCode::NOT_IMPLEMENTED,
        "not supported",
    )
    .await;
    refused(
        &s,
        put(&s, "/v2.1/os-hosts/host1", "2.1", json!({})),
        StatusCode::BAD_REQUEST,
        "",
    )
    .await;
    refused(
        &s,
        put(
            &s,
            "/v2.1/os-hosts/host1",
            "2.1",
            json!({"status": "bogus"}),
        ),
        StatusCode::BAD_REQUEST,
        "",
    )
    .await;
    assert_eq!(
        s.get("/v2.1/os-hosts", ADMIN, Some("2.43")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/v2.1/os-hosts", ALICE, None).await.status,
        StatusCode::FORBIDDEN
    );
}
