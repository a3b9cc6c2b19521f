//! HTTP tests over loopback against an in-process stack (no scheduler or compute:
//! state-dependent tests drive the instance through the engine directly).

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";

fn fault<'a>(r: &'a Resp, kind: &str, code: u16) -> &'a str {
    assert_eq!(r.status.as_u16(), code, "{:?}", r.body);
    let f = &r.body[kind];
    assert!(f.is_object(), "expected {kind}: {:?}", r.body);
    assert_eq!(f["code"], json!(code));
    f["message"].as_str().unwrap()
}

#[tokio::test]
async fn versions_headers_and_microversions() {
    let s = start().await;
    let r = s.call(Method::GET, "/", None, None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["versions"][0]["id"], "v2.0");
    let v = &r.body["versions"][1];
    assert_eq!(v["id"], "v2.1");
    assert_eq!(v["version"], "2.100");
    assert_eq!(v["min_version"], "2.1");
    assert_eq!(v["status"], "CURRENT");
    let rid = r.header("x-openstack-request-id").unwrap().to_string();
    assert!(rid.starts_with("req-") && uuid::Uuid::parse_str(&rid[4..]).is_ok());
    assert_eq!(r.header("x-compute-request-id"), Some(rid.as_str()));

    let r = s.call(Method::GET, "/v2.1", None, None, None).await;
    assert_eq!(
        r.body["version"]["media-types"][0]["type"],
        "application/vnd.openstack.compute+json;version=2.1"
    );
    assert_eq!(r.header("openstack-api-version"), Some("compute 2.1"));
    assert_eq!(r.header("x-openstack-nova-api-version"), Some("2.1"));
    assert!(r.header("vary").unwrap().contains("OpenStack-API-Version"));

    let r = s.get("/v2.1/flavors", ALICE, Some("latest")).await;
    assert_eq!(r.header("openstack-api-version"), Some("compute 2.100"));
    let r = s
        .client
        .get(format!("{}/v2.1/flavors", s.base))
        .header("X-Auth-Token", ALICE)
        .header("X-OpenStack-Nova-API-Version", "2.60")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-openstack-nova-api-version"], "2.60");

    let r = s.get("/v2.1/flavors", ALICE, Some("2.101")).await;
    let m = fault(&r, "computeFault", 406);
    assert!(m.contains("maximum is 2.100"), "{m}");
    assert!(r.header("x-openstack-request-id").is_some());
    let r = s.get("/v2.1/flavors", ALICE, Some("2.x")).await;
    fault(&r, "badRequest", 400);

    // unknown route, bad method, auth
    let r = s.get("/v2.1/nothing-here", ALICE, None).await;
    fault(&r, "itemNotFound", 404);
    let r = s
        .call(Method::PATCH, "/v2.1/servers", Some(ALICE), None, None)
        .await;
    fault(&r, "badMethod", 405);
    let r = s.call(Method::GET, "/v2.1/servers", None, None, None).await;
    fault(&r, "unauthorized", 401);
    let r = s.get("/v2.1/servers", "no-colon", None).await;
    fault(&r, "unauthorized", 401);
    // project-scoped URLs work like plain ones
    let r = s.get("/v2.1/p1/servers", ALICE, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"servers": []}));
}

#[tokio::test]
async fn flavor_lifecycle_and_extra_specs() {
    let s = start().await;
    let r = s
        .post(
            "/v2.1/flavors",
            ADMIN,
            Some("2.75"),
            json!({"flavor": {"name": "test_flavor", "ram": 1024, "vcpus": 2, "disk": 10, "id": "10", "rxtx_factor": 2.0, "description": "test description"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let f = &r.body["flavor"];
    assert_eq!(f["id"], "10");
    assert_eq!(f["swap"], json!(0));
    assert_eq!(f["description"], "test description");
    assert_eq!(f["extra_specs"], json!({}));
    assert_eq!(f["os-flavor-access:is_public"], json!(true));
    assert_eq!(f["OS-FLV-DISABLED:disabled"], json!(false));
    assert_eq!(f["links"][0]["rel"], "self");

    // generated id, private flavor
    let r = s
        .post("/v2.1/flavors", ADMIN, None, json!({"flavor": {"name": "priv", "ram": 512, "vcpus": 1, "disk": 1, "os-flavor-access:is_public": false}}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let priv_id = r.body["flavor"]["id"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&priv_id).is_ok());
    assert_eq!(r.body["flavor"]["swap"], json!(""));
    assert!(r.body["flavor"].get("description").is_none());

    // conflicts and policy
    let before = s.positions().await;
    let r = s
        .post(
            "/v2.1/flavors",
            ADMIN,
            None,
            json!({"flavor": {"name": "other", "ram": 1, "vcpus": 1, "disk": 1, "id": "10"}}),
        )
        .await;
    fault(&r, "conflictingRequest", 409);
    let r = s
        .post(
            "/v2.1/flavors",
            ADMIN,
            None,
            json!({"flavor": {"name": "test_flavor", "ram": 1, "vcpus": 1, "disk": 1}}),
        )
        .await;
    fault(&r, "conflictingRequest", 409);
    let r = s
        .post(
            "/v2.1/flavors",
            ALICE,
            None,
            json!({"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 1}}),
        )
        .await;
    fault(&r, "forbidden", 403);
    assert_eq!(s.positions().await, before);

    s.flavor("2", "m1.small", 2048, 20).await;
    s.flavor("1", "m1.tiny", 512, 1).await;

    // list: sorted by flavorid, public only by default
    let r = s.get("/v2.1/flavors", ALICE, None).await;
    let ids: Vec<&str> = r.body["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["1", "10", "2"]);
    assert_eq!(r.body["flavors"][0].as_object().unwrap().len(), 3);
    let r = s.get("/v2.1/flavors?is_public=None", ADMIN, None).await;
    assert_eq!(r.body["flavors"].as_array().unwrap().len(), 4);
    let r = s.get("/v2.1/flavors?is_public=None", ALICE, None).await;
    assert_eq!(r.body["flavors"].as_array().unwrap().len(), 3);
    let r = s
        .get("/v2.1/flavors/detail?minRam=1024&minDisk=10", ALICE, None)
        .await;
    let ids: Vec<&str> = r.body["flavors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["10", "2"]);
    assert_eq!(r.body["flavors"][0]["ram"], json!(1024));
    let r = s.get("/v2.1/flavors?limit=2", ALICE, None).await;
    assert_eq!(r.body["flavors"].as_array().unwrap().len(), 2);
    let next = r.body["flavors_links"][0]["href"].as_str().unwrap();
    assert!(next.ends_with("limit=2&marker=10"), "{next}");
    let r = s.get("/v2.1/flavors?marker=10", ALICE, None).await;
    assert_eq!(r.body["flavors"][0]["id"], "2");
    let r = s.get("/v2.1/flavors?marker=nope", ALICE, None).await;
    fault(&r, "badRequest", 400);
    let r = s.get("/v2.1/flavors?minRam=abc", ALICE, None).await;
    fault(&r, "badRequest", 400);

    // show / private visibility
    let r = s
        .get(&format!("/v2.1/flavors/{priv_id}"), ALICE, None)
        .await;
    fault(&r, "itemNotFound", 404);
    let r = s
        .get(&format!("/v2.1/flavors/{priv_id}"), ADMIN, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // description update (2.55+)
    let r = s
        .call(
            Method::PUT,
            "/v2.1/flavors/1",
            Some(ADMIN),
            Some("2.55"),
            Some(json!({"flavor": {"description": "updated description"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["flavor"]["description"], "updated description");

    // extra specs
    let r = s
        .post(
            "/v2.1/flavors/1/os-extra_specs",
            ADMIN,
            None,
            json!({"extra_specs": {"hw:cpu_policy": "shared", "hw:numa_nodes": 1}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"extra_specs": {"hw:cpu_policy": "shared", "hw:numa_nodes": "1"}})
    );
    let r = s.get("/v2.1/flavors/1/os-extra_specs", ALICE, None).await;
    assert_eq!(r.body["extra_specs"]["hw:numa_nodes"], "1");
    let r = s
        .get("/v2.1/flavors/1/os-extra_specs/hw:numa_nodes", ALICE, None)
        .await;
    assert_eq!(r.body, json!({"hw:numa_nodes": "1"}));
    let r = s
        .call(
            Method::PUT,
            "/v2.1/flavors/1/os-extra_specs/hw:numa_nodes",
            Some(ADMIN),
            None,
            Some(json!({"hw:numa_nodes": "2"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"hw:numa_nodes": "2"}));
    let before = s.positions().await;
    let r = s
        .call(
            Method::PUT,
            "/v2.1/flavors/1/os-extra_specs/hw:numa_nodes",
            Some(ADMIN),
            None,
            Some(json!({"other": "2"})),
        )
        .await;
    assert_eq!(
        fault(&r, "badRequest", 400),
        "Request body and URI mismatch"
    );
    let r = s
        .call(
            Method::PUT,
            "/v2.1/flavors/1/os-extra_specs/hw:numa_nodes",
            Some(ADMIN),
            None,
            Some(json!({"hw:numa_nodes": "2", "b": "c"})),
        )
        .await;
    fault(&r, "badRequest", 400);
    let r = s
        .get("/v2.1/flavors/1/os-extra_specs/missing", ALICE, None)
        .await;
    fault(&r, "itemNotFound", 404);
    let r = s
        .call(
            Method::DELETE,
            "/v2.1/flavors/1/os-extra_specs/missing",
            Some(ADMIN),
            None,
            None,
        )
        .await;
    fault(&r, "itemNotFound", 404);
    assert_eq!(s.positions().await, before);
    let r = s
        .call(
            Method::DELETE,
            "/v2.1/flavors/1/os-extra_specs/hw:cpu_policy",
            Some(ADMIN),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = s.get("/v2.1/flavors/1", ALICE, Some("2.61")).await;
    assert_eq!(
        r.body["flavor"]["extra_specs"],
        json!({"hw:numa_nodes": "2"})
    );

    // delete
    let r = s
        .call(Method::DELETE, "/v2.1/flavors/2", Some(ALICE), None, None)
        .await;
    fault(&r, "forbidden", 403);
    let r = s
        .call(Method::DELETE, "/v2.1/flavors/2", Some(ADMIN), None, None)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = s.get("/v2.1/flavors/2", ALICE, None).await;
    assert_eq!(
        fault(&r, "itemNotFound", 404),
        "Flavor 2 could not be found."
    );
    let r = s
        .call(Method::DELETE, "/v2.1/flavors/2", Some(ADMIN), None, None)
        .await;
    fault(&r, "itemNotFound", 404);
}

#[tokio::test]
async fn server_create_show_list_update_delete() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    // `key_name` must name one of the caller's key pairs.
    let r = s
        .post(
            "/v2.1/os-keypairs",
            ALICE,
            None,
            json!({"keypair": {"name": "mykey", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // The zone `nova` exists only while a compute host is in it (Nova lists the zones
    // of compute services).
    s.register_host("host1").await;
    let r = s
        .post(
            "/v2.1/servers",
            ALICE,
            Some("2.96"),
            json!({"server": {
                "name": "new-server-test",
                "imageRef": format!("http://glance/images/{IMAGE}"),
                "flavorRef": "http://openstack.example.com/flavors/1",
                "networks": "none",
                "metadata": {"My Server Name": "Apache1"},
                "availability_zone": "nova",
                "description": "a server",
                "key_name": "mykey",
            }}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let created = &r.body["server"];
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["OS-DCF:diskConfig"], "MANUAL");
    assert_eq!(created["security_groups"], json!([{"name": "default"}]));
    assert_eq!(created["adminPass"].as_str().unwrap().len(), 12);
    assert!(r
        .header("location")
        .unwrap()
        .ends_with(&format!("/servers/{id}")));
    let create_rid = r.header("x-openstack-request-id").unwrap().to_string();

    // 2.1 shape
    let r = s.get(&format!("/v2.1/servers/{id}"), ALICE, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = &r.body["server"];
    assert_eq!(v["status"], "BUILD");
    assert_eq!(v["tenant_id"], "p1");
    assert_eq!(v["user_id"], "alice");
    assert_eq!(v["metadata"], json!({"My Server Name": "Apache1"}));
    assert_eq!(v["flavor"]["id"], "1");
    assert_eq!(v["image"]["id"], IMAGE);
    assert_eq!(v["hostId"], "");
    assert_eq!(v["OS-EXT-STS:vm_state"], "building");
    assert_eq!(v["OS-EXT-STS:task_state"], "scheduling");
    assert_eq!(v["OS-EXT-STS:power_state"], json!(0));
    assert_eq!(v["OS-EXT-AZ:availability_zone"], "nova");
    assert_eq!(v["progress"], json!(0));
    assert_eq!(v["key_name"], "mykey");
    assert!(v["created"].as_str().unwrap().ends_with('Z'));
    for absent in [
        "locked",
        "description",
        "tags",
        "OS-EXT-SRV-ATTR:host",
        "host_status",
        "pinned_availability_zone",
    ] {
        assert!(v.get(absent).is_none(), "{absent} at 2.1");
    }
    // 2.9 / 2.19 / 2.26 / 2.47 / 2.73 / 2.96
    let r = s
        .get(&format!("/v2.1/servers/{id}"), ALICE, Some("2.9"))
        .await;
    assert_eq!(r.body["server"]["locked"], json!(false));
    assert!(r.body["server"].get("description").is_none());
    let r = s
        .get(&format!("/v2.1/servers/{id}"), ALICE, Some("2.47"))
        .await;
    let v = &r.body["server"];
    assert_eq!(v["description"], "a server");
    assert_eq!(v["tags"], json!([]));
    assert_eq!(
        v["flavor"],
        json!({"vcpus": 1, "ram": 512, "disk": 1, "ephemeral": 0, "swap": 0, "original_name": "m1.tiny", "extra_specs": {}})
    );
    assert!(v.get("locked_reason").is_none());
    let r = s
        .get(&format!("/v2.1/servers/{id}"), ALICE, Some("2.96"))
        .await;
    let v = &r.body["server"];
    assert_eq!(v["locked_reason"], Value::Null);
    assert_eq!(v["pinned_availability_zone"], "nova");
    assert_eq!(v["server_groups"], json!([]));
    assert_eq!(v["trusted_image_certificates"], Value::Null);
    assert_eq!(v["OS-EXT-SRV-ATTR:hostname"], "new-server-test");
    assert!(v.get("OS-EXT-SRV-ATTR:host").is_none());
    // admin-only fields
    let r = s
        .get(&format!("/v2.1/servers/{id}"), ADMIN, Some("2.16"))
        .await;
    let v = &r.body["server"];
    assert_eq!(v["OS-EXT-SRV-ATTR:host"], Value::Null);
    assert!(v["OS-EXT-SRV-ATTR:instance_name"]
        .as_str()
        .unwrap()
        .starts_with("instance-"));
    assert_eq!(
        v["OS-EXT-SRV-ATTR:reservation_id"].as_str().unwrap().len(),
        10
    );
    assert_eq!(v["host_status"], "");

    // other projects: 404, never 403
    for (m, path, body) in [
        (Method::GET, format!("/v2.1/servers/{id}"), None),
        (
            Method::PUT,
            format!("/v2.1/servers/{id}"),
            Some(json!({"server": {"name": "x"}})),
        ),
        (Method::DELETE, format!("/v2.1/servers/{id}"), None),
        (
            Method::POST,
            format!("/v2.1/servers/{id}/action"),
            Some(json!({"pause": null})),
        ),
        (Method::GET, format!("/v1/instances/{id}/events"), None),
    ] {
        let r = s.call(m, &path, Some(BOB), None, body).await;
        assert_eq!(
            fault(&r, "itemNotFound", 404),
            format!("Instance {id} could not be found.")
        );
    }

    // more servers for lists
    let id2 = s.server(ALICE, "web-2", "1").await;
    let id3 = s.server(ALICE, "db-1", "1").await;
    let _bob = s.server(BOB, "bobs", "1").await;
    let r = s.get("/v2.1/servers", ALICE, None).await;
    let ids: Vec<&str> = r.body["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id3.as_str(), id2.as_str(), id.as_str()]);
    assert_eq!(r.body["servers"][0].as_object().unwrap().len(), 3);
    let r = s.get("/v2.1/servers/detail?name=web", ALICE, None).await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["servers"][0]["id"], id2.as_str());
    let r = s
        .get("/v2.1/servers/detail?status=BUILD", ALICE, None)
        .await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 3);
    let r = s
        .get("/v2.1/servers/detail?status=ACTIVE", ALICE, None)
        .await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 0);
    let r = s.get("/v2.1/servers?limit=2", ALICE, None).await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 2);
    let next = r.body["servers_links"][0]["href"].as_str().unwrap();
    assert!(next.contains(&format!("limit=2&marker={id2}")), "{next}");
    let r = s
        .get(&format!("/v2.1/servers?limit=2&marker={id2}"), ALICE, None)
        .await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 1);
    assert!(r.body.get("servers_links").is_none());
    let r = s
        .get(
            "/v2.1/servers?marker=9c6b2d6c-0000-4000-8000-000000000000",
            ALICE,
            None,
        )
        .await;
    fault(&r, "badRequest", 400);
    let r = s.get("/v2.1/servers?all_tenants=1", ALICE, None).await;
    fault(&r, "forbidden", 403);
    let r = s.get("/v2.1/servers?all_tenants=1", ADMIN, None).await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 4);
    let r = s.get("/v2.1/servers", ADMIN, None).await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 0);
    let r = s.get("/v2.1/servers?bogus=1", ALICE, Some("2.75")).await;
    fault(&r, "badRequest", 400);
    let r = s.get("/v2.1/servers?bogus=1", ALICE, Some("2.74")).await;
    assert_eq!(r.status, StatusCode::OK);

    // update
    let r = s
        .call(
            Method::PUT,
            &format!("/v2.1/servers/{id}"),
            Some(ALICE),
            Some("2.19"),
            Some(json!({"server": {"name": "renamed", "description": null}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["server"]["name"], "renamed");
    assert_eq!(r.body["server"]["description"], Value::Null);

    // delete (unscheduled: at once), then 404, visible in changes-since
    let before_delete = engine::now();
    let r = s
        .call(
            Method::DELETE,
            &format!("/v2.1/servers/{id2}"),
            Some(ALICE),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = s.get(&format!("/v2.1/servers/{id2}"), ALICE, None).await;
    fault(&r, "itemNotFound", 404);
    let r = s.get("/v2.1/servers", ALICE, None).await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 2);
    let since = api::util::iso_z(domain::Timestamp(before_delete.0 - 1_000_000));
    let r = s
        .get(
            &format!("/v2.1/servers/detail?changes-since={since}"),
            ALICE,
            None,
        )
        .await;
    let deleted: Vec<&Value> = r.body["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["status"] == "DELETED")
        .collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["id"], id2.as_str());
    let r = s
        .get("/v2.1/servers?changes-since=notatime", ALICE, None)
        .await;
    fault(&r, "badRequest", 400);

    // native event history
    let r = s
        .get(&format!("/v1/instances/{id}/events"), ALICE, None)
        .await;
    let evs = r.body["events"].as_array().unwrap();
    assert_eq!(evs[0]["type"], "instance.build_requested");
    assert_eq!(evs[0]["request_id"], create_rid.as_str());
    assert_eq!(
        evs[0]["actor"],
        json!({"user": "alice", "project": "p1", "roles": ["member", "reader"]})
    );
    assert_eq!(evs[1]["type"], "instance.updated");
}

#[tokio::test]
async fn bad_input_changes_nothing() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    let id = s.server(ALICE, "victim", "1").await;
    let before = s.positions().await;
    let srv = "/v2.1/servers";
    let action = format!("/v2.1/servers/{id}/action");

    // malformed JSON
    let r = s
        .raw(Method::POST, srv, ALICE, b"{\"server\": {".to_vec())
        .await;
    assert_eq!(fault(&r, "badRequest", 400), "Malformed request body");
    let r = s
        .raw(Method::POST, &action, ALICE, b"not json".to_vec())
        .await;
    fault(&r, "badRequest", 400);
    let r = s
        .raw(Method::POST, "/v2.1/flavors", ADMIN, b"[1,".to_vec())
        .await;
    fault(&r, "badRequest", 400);
    // wrong types
    for body in [
        json!({"server": "x"}),
        json!({"server": {"name": 12, "imageRef": IMAGE, "flavorRef": "1"}}),
        json!({"server": {"name": "a", "imageRef": IMAGE, "flavorRef": "1", "metadata": {"k": 1}}}),
        json!({"server": {"name": "a", "imageRef": IMAGE, "flavorRef": "1", "metadata": []}}),
        json!({"server": {"name": "a", "imageRef": IMAGE, "flavorRef": "1", "min_count": "x"}}),
    ] {
        let r = s.post(srv, ALICE, None, body).await;
        fault(&r, "badRequest", 400);
    }
    let r = s
        .post(
            "/v2.1/flavors",
            ADMIN,
            None,
            json!({"flavor": {"name": "f", "ram": "lots", "vcpus": 1, "disk": 1}}),
        )
        .await;
    fault(&r, "badRequest", 400);
    let r = s
        .post(&action, ALICE, None, json!({"reboot": {"type": 1}}))
        .await;
    fault(&r, "badRequest", 400);
    let r = s
        .post(&action, ALICE, None, json!({"reboot": {"type": "GENTLE"}}))
        .await;
    fault(&r, "badRequest", 400);
    // missing fields
    for body in [
        json!({}),
        json!({"server": {"imageRef": IMAGE, "flavorRef": "1"}}),
        json!({"server": {"name": "a", "imageRef": IMAGE}}),
        json!({"server": {"name": "a", "flavorRef": "1"}}),
    ] {
        let r = s.post(srv, ALICE, None, body).await;
        fault(&r, "badRequest", 400);
    }
    let r = s
        .post(
            srv,
            ALICE,
            Some("2.37"),
            json!({"server": {"name": "a", "imageRef": IMAGE, "flavorRef": "1"}}),
        )
        .await;
    assert!(fault(&r, "badRequest", 400).contains("networks"));
    let r = s
        .post(
            "/v2.1/flavors",
            ADMIN,
            None,
            json!({"flavor": {"name": "f", "vcpus": 1, "disk": 1}}),
        )
        .await;
    fault(&r, "badRequest", 400);
    let r = s.post(&action, ALICE, None, json!({"reboot": {}})).await;
    fault(&r, "badRequest", 400);
    let r = s.post(&action, ALICE, None, json!({})).await;
    fault(&r, "badRequest", 400);
    // extra keys
    let r = s
        .post(
            srv,
            ALICE,
            None,
            json!({"server": {"name": "a", "imageRef": IMAGE, "flavorRef": "1", "colour": "red"}}),
        )
        .await;
    assert!(fault(&r, "badRequest", 400).contains("'colour' was unexpected"));
    // metadata over the limit (Nova: 403)
    let md: serde_json::Map<String, Value> =
        (0..129).map(|i| (format!("k{i}"), json!("v"))).collect();
    let r = s
        .post(
            srv,
            ALICE,
            None,
            json!({"server": {"name": "a", "imageRef": IMAGE, "flavorRef": "1", "metadata": md}}),
        )
        .await;
    fault(&r, "forbidden", 403);
    // unknown server id
    let unknown = "9c6b2d6c-0000-4000-8000-000000000000";
    let r = s
        .get(&format!("/v2.1/servers/{unknown}"), ALICE, None)
        .await;
    assert_eq!(
        fault(&r, "itemNotFound", 404),
        format!("Instance {unknown} could not be found.")
    );
    let r = s
        .post(
            &format!("/v2.1/servers/{unknown}/action"),
            ALICE,
            None,
            json!({"pause": null}),
        )
        .await;
    fault(&r, "itemNotFound", 404);
    let r = s
        .call(
            Method::DELETE,
            "/v2.1/servers/not-a-uuid",
            Some(ALICE),
            None,
            None,
        )
        .await;
    fault(&r, "itemNotFound", 404);
    let r = s
        .call(
            Method::PUT,
            &format!("/v2.1/servers/{unknown}"),
            Some(ALICE),
            None,
            Some(json!({"server": {"name": "n"}})),
        )
        .await;
    fault(&r, "itemNotFound", 404);
    // unknown flavor id
    let r = s.get("/v2.1/flavors/nope", ALICE, None).await;
    assert_eq!(
        fault(&r, "itemNotFound", 404),
        "Flavor nope could not be found."
    );
    let r = s
        .post(
            "/v2.1/flavors/nope/os-extra_specs",
            ADMIN,
            None,
            json!({"extra_specs": {"a": "b"}}),
        )
        .await;
    fault(&r, "itemNotFound", 404);
    // unknown flavorRef on create
    let r = s
        .post(
            srv,
            ALICE,
            None,
            json!({"server": {"name": "a", "imageRef": IMAGE, "flavorRef": "http://x/flavors/42"}}),
        )
        .await;
    assert_eq!(
        fault(&r, "badRequest", 400),
        "Flavor 42 could not be found."
    );
    let r = s
        .post(&action, ALICE, None, json!({"resize": {"flavorRef": "42"}}))
        .await;
    fault(&r, "badRequest", 400);
    // unknown action, two actions
    let r = s.post(&action, ALICE, None, json!({"fly": null})).await;
    fault(&r, "badRequest", 400);
    let r = s
        .post(
            &action,
            ALICE,
            None,
            json!({"pause": null, "unpause": null}),
        )
        .await;
    fault(&r, "badRequest", 400);
    // invalid state: Nova's exact message
    let r = s.post(&action, ALICE, None, json!({"pause": null})).await;
    assert_eq!(
        fault(&r, "conflictingRequest", 409),
        format!("Cannot 'pause' instance {id} while it is in vm_state building")
    );
    let r = s
        .post(&action, ALICE, None, json!({"confirmResize": null}))
        .await;
    fault(&r, "conflictingRequest", 409);
    // policy
    let r = s
        .post(
            &action,
            ALICE,
            None,
            json!({"os-resetState": {"state": "error"}}),
        )
        .await;
    fault(&r, "forbidden", 403);
    // body over 1 MiB
    let big = format!(
        "{{\"server\": {{\"name\": \"{}\"}}}}",
        "x".repeat(1024 * 1024 + 10)
    );
    let r = s
        .raw(Method::POST, srv, ALICE, big.clone().into_bytes())
        .await;
    fault(&r, "overLimit", 413);
    let r = s.raw(Method::POST, &action, ALICE, big.into_bytes()).await;
    fault(&r, "overLimit", 413);

    assert_eq!(
        s.positions().await,
        before,
        "a refused request appended events"
    );
}

#[tokio::test]
async fn actions_on_an_active_server() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    s.flavor("2", "m1.small", 2048, 20).await;
    let host = s.register_host("compute-1").await;
    let id = s.server(ALICE, "vm", "1").await;
    s.make_active(&id, &host).await;
    let action = format!("/v2.1/servers/{id}/action");

    let r = s
        .get(&format!("/v2.1/servers/{id}"), ADMIN, Some("2.16"))
        .await;
    let v = &r.body["server"];
    assert_eq!(v["status"], "ACTIVE");
    assert_eq!(v["OS-EXT-SRV-ATTR:host"], "compute-1");
    assert_eq!(v["OS-EXT-SRV-ATTR:hypervisor_hostname"], "compute-1");
    assert_eq!(v["host_status"], "UP");
    assert_eq!(v["hostId"], api::util::sha224_hex(b"p1compute-1"));
    assert!(v["OS-SRV-USG:launched_at"].is_string());
    let r = s
        .get(
            "/v2.1/servers/detail?host=compute-1&all_tenants=1",
            ADMIN,
            None,
        )
        .await;
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 1);

    // admin-only actions and host validation
    let before = s.positions().await;
    let r = s.post(&action, ALICE, None, json!({"migrate": null})).await;
    fault(&r, "forbidden", 403);
    let r = s
        .post(
            &action,
            ALICE,
            Some("2.25"),
            json!({"os-migrateLive": {"host": null, "block_migration": "auto"}}),
        )
        .await;
    fault(&r, "forbidden", 403);
    let r = s
        .post(
            &action,
            ADMIN,
            Some("2.56"),
            json!({"migrate": {"host": "nohost"}}),
        )
        .await;
    assert_eq!(
        fault(&r, "badRequest", 400),
        "Compute host nohost could not be found."
    );
    let r = s
        .post(
            &action,
            ADMIN,
            Some("2.30"),
            json!({"os-migrateLive": {"host": "nohost", "block_migration": false}}),
        )
        .await;
    assert_eq!(
        fault(&r, "badRequest", 400),
        "Compute host nohost could not be found."
    );
    let r = s
        .post(
            &action,
            ADMIN,
            Some("2.68"),
            json!({"os-migrateLive": {"host": null, "block_migration": "auto", "force": false}}),
        )
        .await;
    fault(&r, "badRequest", 400);
    let r = s
        .post(&action, ALICE, None, json!({"os-start": null}))
        .await;
    assert_eq!(
        fault(&r, "conflictingRequest", 409),
        format!("Cannot 'start' instance {id} while it is in vm_state active")
    );
    let r = s
        .post(&action, ALICE, None, json!({"resize": {"flavorRef": "1"}}))
        .await;
    fault(&r, "badRequest", 400);
    assert_eq!(s.positions().await, before);

    // lock with a reason (2.73), owner can still see it; pause while locked by owner is fine for admin
    let r = s
        .post(
            &action,
            ALICE,
            Some("2.73"),
            json!({"lock": {"locked_reason": "maintenance"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.body, Value::Null);
    let r = s
        .get(&format!("/v2.1/servers/{id}"), ALICE, Some("2.73"))
        .await;
    assert_eq!(r.body["server"]["locked"], json!(true));
    assert_eq!(r.body["server"]["locked_reason"], "maintenance");
    let r = s.post(&action, ALICE, None, json!({"pause": null})).await;
    assert_eq!(
        fault(&r, "conflictingRequest", 409),
        format!("Instance {id} is locked")
    );
    let r = s.post(&action, ALICE, None, json!({"unlock": null})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    // pause -> task_state pausing; again -> 409 on task_state
    let r = s.post(&action, ALICE, None, json!({"pause": null})).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let r = s.get(&format!("/v2.1/servers/{id}"), ALICE, None).await;
    assert_eq!(r.body["server"]["OS-EXT-STS:task_state"], "pausing");
    let r = s.post(&action, ALICE, None, json!({"pause": null})).await;
    assert_eq!(
        fault(&r, "conflictingRequest", 409),
        format!("Cannot 'pause' instance {id} while it is in task_state pausing")
    );

    // admin reset-state -> ERROR
    let r = s
        .post(
            &action,
            ADMIN,
            None,
            json!({"os-resetState": {"state": "error"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let r = s.get(&format!("/v2.1/servers/{id}"), ALICE, None).await;
    assert_eq!(r.body["server"]["status"], "ERROR");
    assert_eq!(r.body["server"]["OS-EXT-STS:task_state"], Value::Null);

    // reboot HARD is allowed from ERROR
    let r = s
        .post(&action, ALICE, None, json!({"reboot": {"type": "HARD"}}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);

    // history: api subject first, then the cell subject
    let r = s
        .get(&format!("/v1/instances/{id}/events"), ALICE, None)
        .await;
    let types: Vec<&str> = r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "instance.build_requested",
            "instance.mapped",
            "instance.placed",
            "instance.spawned",
            "instance.locked",
            "instance.unlocked",
            "instance.task_started",
            "instance.state_reset",
            "instance.task_started",
        ]
    );
    let e = &r.body["events"][2];
    assert!(e["subject"]
        .as_str()
        .unwrap()
        .starts_with("stratus.cell.cell1.instance."));
    assert_eq!(e["sequence"], json!(1));
    assert!(e["occurred_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn create_variants_boot_from_volume_private_flavor_and_az() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    let r = s
        .post("/v2.1/flavors", ADMIN, None, json!({"flavor": {"id": "p", "name": "private", "ram": 512, "vcpus": 1, "disk": 1, "os-flavor-access:is_public": false}}))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let before = s.positions().await;
    let r = s
        .post(
            "/v2.1/servers",
            ALICE,
            None,
            json!({"server": {"name": "a", "imageRef": IMAGE, "flavorRef": "p"}}),
        )
        .await;
    assert_eq!(fault(&r, "badRequest", 400), "Flavor p could not be found.");
    let r = s
        .post("/v2.1/servers", ALICE, None, json!({"server": {"name": "a", "imageRef": IMAGE, "flavorRef": "1", "availability_zone": "mars"}}))
        .await;
    fault(&r, "badRequest", 400);
    let r = s
        .post("/v2.1/servers", ALICE, Some("2.74"), json!({"server": {"name": "a", "imageRef": IMAGE, "flavorRef": "1", "networks": "auto", "host": "h1"}}))
        .await;
    fault(&r, "forbidden", 403);
    let r = s
        .post("/v2.1/servers", ADMIN, Some("2.74"), json!({"server": {"name": "a", "imageRef": IMAGE, "flavorRef": "1", "networks": "auto", "host": "h1"}}))
        .await;
    assert_eq!(
        fault(&r, "badRequest", 400),
        "Compute host h1 could not be found."
    );
    let r = s
        .post(
            "/v2.1/servers",
            ALICE,
            None,
            json!({"server": {"name": "a", "imageRef": IMAGE, "flavorRef": "1", "min_count": 4, "max_count": 3}}),
        )
        .await;
    assert_eq!(
        fault(&r, "badRequest", 400),
        "min_count must be <= max_count"
    );
    assert_eq!(s.positions().await, before);

    // admins may use private flavors; boot from volume shows image ""
    let r = s
        .post(
            "/v2.1/servers",
            ADMIN,
            Some("2.37"),
            json!({"server": {"name": "bfv", "flavorRef": "p", "networks": "none", "min_count": 1, "max_count": 1,
                "block_device_mapping_v2": [{"boot_index": 0, "uuid": IMAGE, "source_type": "image", "destination_type": "volume", "volume_size": 1}]}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.body["server"]["id"].as_str().unwrap();
    let r = s.get(&format!("/v2.1/servers/{id}"), ADMIN, None).await;
    assert_eq!(r.body["server"]["image"], json!(""));
    assert_eq!(r.body["server"]["flavor"]["id"], "p");
}

/// 2.98 embeds the image properties recorded at boot, 2.100 the scheduler hints; hints
/// are validated as Nova's schema does (known ones type-checked, unknown ones kept).
#[tokio::test]
async fn scheduler_hints_and_image_properties_by_microversion() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    let same = "48e6a9f6-30af-47e0-bc04-acaed113bb4e";
    let r = s
        .post(
            "/v2.1/servers",
            ALICE,
            Some("2.100"),
            json!({"server": {"name": "h", "imageRef": IMAGE, "flavorRef": "1", "networks": "none"},
                   "os:scheduler_hints": {"same_host": [same], "my_hint": {"a": 1}}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let id = r.body["server"]["id"].as_str().unwrap().to_string();
    let r = s
        .get(&format!("/v2.1/servers/{id}"), ALICE, Some("2.100"))
        .await;
    let v = &r.body["server"];
    assert_eq!(
        v["scheduler_hints"],
        json!({"same_host": [same], "my_hint": {"a": 1}})
    );
    assert_eq!(v["image"]["properties"], json!({}));
    let r = s.get("/v2.1/servers/detail", ALICE, Some("2.100")).await;
    assert_eq!(
        r.body["servers"][0]["scheduler_hints"]["same_host"],
        json!([same])
    );
    let r = s
        .get(&format!("/v2.1/servers/{id}"), ALICE, Some("2.99"))
        .await;
    assert!(r.body["server"].get("scheduler_hints").is_none());
    assert_eq!(r.body["server"]["image"]["properties"], json!({}));
    let r = s
        .get(&format!("/v2.1/servers/{id}"), ALICE, Some("2.97"))
        .await;
    assert!(r.body["server"]["image"].get("properties").is_none());
    // A server created without hints shows {}.
    let r = s
        .post(
            "/v2.1/servers",
            ALICE,
            Some("2.100"),
            json!({"server": {"name": "n", "imageRef": IMAGE, "flavorRef": "1", "networks": "none"}}),
        )
        .await;
    let id2 = r.body["server"]["id"].as_str().unwrap().to_string();
    let r = s
        .get(&format!("/v2.1/servers/{id2}"), ALICE, Some("2.100"))
        .await;
    assert_eq!(r.body["server"]["scheduler_hints"], json!({}));
    // Bad hints: 400, nothing created.
    let before = s.get("/v2.1/servers", ALICE, None).await.body["servers"]
        .as_array()
        .unwrap()
        .len();
    for hints in [
        json!({"same_host": "not-a-uuid"}),
        json!({"different_host": [same, 7]}),
        json!({"group": 5}),
        json!({"build_near_host_ip": "999.1.1.1"}),
        json!({"cidr": "24"}),
        json!("not an object"),
    ] {
        let r = s
            .post(
                "/v2.1/servers",
                ALICE,
                Some("2.100"),
                json!({"server": {"name": "b", "imageRef": IMAGE, "flavorRef": "1", "networks": "none"},
                       "os:scheduler_hints": hints}),
            )
            .await;
        fault(&r, "badRequest", 400);
    }
    let after = s.get("/v2.1/servers", ALICE, None).await.body["servers"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
}

#[tokio::test]
async fn rebuild_by_microversion() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    let host = s.register_host("compute-1").await;
    let id = s.server(ALICE, "vm", "1").await;
    s.make_active(&id, &host).await;
    let action = format!("/v2.1/servers/{id}/action");

    // Refusals append nothing.
    let before = s.positions().await;
    let missing = uuid::Uuid::new_v4().to_string();
    for (version, body, message) in [
        (
            None,
            json!({"rebuild": {}}),
            "Invalid input for field/attribute rebuild. Value: {}. 'imageRef' is a required property",
        ),
        (
            None,
            json!({"rebuild": {"imageRef": "not-an-image"}}),
            "Invalid imageRef provided.",
        ),
        (
            None,
            json!({"rebuild": {"imageRef": missing}}),
            "Cannot find image for rebuild",
        ),
        (
            None,
            json!({"rebuild": {"imageRef": IMAGE, "user_data": "eA=="}}),
            "Additional properties are not allowed ('user_data' was unexpected)",
        ),
        (
            Some("2.89"),
            json!({"rebuild": {"imageRef": IMAGE, "hostname": "web"}}),
            "Additional properties are not allowed ('hostname' was unexpected)",
        ),
        (
            Some("2.57"),
            json!({"rebuild": {"imageRef": IMAGE, "personality": []}}),
            "Additional properties are not allowed ('personality' was unexpected)",
        ),
        (
            None,
            json!({"rebuild": {"imageRef": IMAGE, "accessIPv4": "1.2.3"}}),
            "Invalid input for field/attribute accessIPv4. Value: \"1.2.3\". '1.2.3' is not a 'ipv4'",
        ),
        (
            None,
            json!({"rebuild": {"imageRef": IMAGE, "name": "  "}}),
            "Invalid input for field/attribute name. Value: \"  \". is not a valid server name",
        ),
    ] {
        let r = s.post(&action, ALICE, version, body.clone()).await;
        assert_eq!(fault(&r, "badRequest", 400), message, "{body}");
    }
    let r = s
        .post(&action, BOB, None, json!({"rebuild": {"imageRef": IMAGE}}))
        .await;
    fault(&r, "itemNotFound", 404);
    assert_eq!(s.positions().await, before, "refusals appended");

    // Accepted: 202 with the server, REBUILD, and everything the request set.
    let r = s
        .post(
            &action,
            ALICE,
            Some("2.90"),
            json!({"rebuild": {
                "imageRef": IMAGE,
                "name": "web-2",
                "description": "rebuilt",
                "metadata": {"role": "web"},
                "adminPass": "s3cret",
                "accessIPv4": "192.0.2.10",
                "accessIPv6": "2001:db8::10",
                "key_name": null,
                "user_data": "IyEvYmluL3NoCg==",
                "trusted_image_certificates": ["cert-1"],
                "hostname": "web-2-host",
                "preserve_ephemeral": false
            }}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let v = &r.body["server"];
    assert_eq!(v["status"], "REBUILD");
    assert_eq!(v["OS-EXT-STS:task_state"], "rebuilding");
    assert_eq!(v["adminPass"], "s3cret");
    assert_eq!(v["name"], "web-2");
    assert_eq!(v["description"], "rebuilt");
    assert_eq!(v["metadata"], json!({"role": "web"}));
    assert_eq!(v["accessIPv4"], "192.0.2.10");
    assert_eq!(v["accessIPv6"], "2001:db8::10");
    assert_eq!(v["user_data"], "IyEvYmluL3NoCg==");
    assert_eq!(v["trusted_image_certificates"], json!(["cert-1"]));
    assert_eq!(v["OS-EXT-SRV-ATTR:hostname"], "web-2-host");
    assert_eq!(v["image"]["id"], IMAGE);

    // One rebuild at a time.
    let r = s
        .post(
            &action,
            ALICE,
            None,
            json!({"rebuild": {"imageRef": IMAGE}}),
        )
        .await;
    assert_eq!(
        fault(&r, "conflictingRequest", 409),
        format!("Cannot 'rebuild' instance {id} while it is in task_state rebuilding")
    );

    // The compute steps end ACTIVE; what the request set stays shown.
    let iid = domain::InstanceId::parse(&id).unwrap();
    for task in [
        domain::TaskState::Rebuilding,
        domain::TaskState::RebuildBlockDeviceMapping,
        domain::TaskState::RebuildSpawning,
    ] {
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
                domain::instance::InstanceCommand::Complete { op, task },
                &svc_ctx(),
                &engine::Meta::default(),
            )
            .await
            .unwrap();
    }
    let r = s
        .get(&format!("/v2.1/servers/{id}"), ADMIN, Some("2.90"))
        .await;
    let v = &r.body["server"];
    assert_eq!(v["status"], "ACTIVE");
    assert_eq!(v["name"], "web-2");
    assert_eq!(v["accessIPv4"], "192.0.2.10");
    assert_eq!(v["OS-EXT-SRV-ATTR:hostname"], "web-2-host");
    assert_eq!(v["OS-EXT-SRV-ATTR:user_data"], "IyEvYmluL3NoCg==");
    assert_eq!(v["trusted_image_certificates"], json!(["cert-1"]));

    // Without adminPass one is generated; before 2.57 there is no user_data key.
    let r = s
        .post(
            &action,
            ALICE,
            None,
            json!({"rebuild": {"imageRef": IMAGE}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let pass = r.body["server"]["adminPass"].as_str().unwrap();
    assert_eq!(pass.len(), 12);
    assert!(r.body["server"].get("user_data").is_none());
    assert_eq!(
        r.body["server"]["name"], "web-2",
        "name kept when not given"
    );
}
