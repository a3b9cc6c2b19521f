//! A cell whose stream is unreachable ("down"): the other cells keep working, lists
//! still answer, and the down cell's instances are shown as Nova does — partial
//! records from microversion 2.69 (without filters, paging or sorting), skipped below
//! it (`list_records_by_skipping_down_cells = True`); show is partial at >= 2.69 and a
//! 503 below; changes are refused with a 503 and append nothing.

mod common;

use std::collections::BTreeSet;

use common::*;
use domain::instance::InstanceCommand;
use domain::{CellName, InstanceId};
use engine::Meta;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(ks: &[&str]) -> BTreeSet<String> {
    ks.iter().map(|s| s.to_string()).collect()
}

fn ids(body: &Value) -> Vec<String> {
    body["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// One ACTIVE server in cell1 and one NoValidHost server in cell0, both of alice.
async fn two_cells() -> (Stack, String, String) {
    let st = start().await;
    st.flavor("1", "m1.tiny", 512, 1).await;
    let host = st.register_host("host1").await;
    let in_cell0 = st.server(ALICE, "zero", "1").await;
    let iid = InstanceId::parse(&in_cell0).unwrap();
    let op = st
        .engine
        .world()
        .read()
        .instance(&iid)
        .unwrap()
        .op
        .unwrap()
        .id;
    for c in [
        InstanceCommand::Map {
            op,
            cell: CellName::cell0(),
            host: None,
            fault: Some("No valid host was found.".into()),
            fault_details: None,
        },
        InstanceCommand::Place,
    ] {
        st.engine
            .instance(iid, c, &svc_ctx(), &Meta::default())
            .await
            .unwrap();
    }
    let in_cell1 = st.server(ALICE, "one", "1").await;
    st.make_active(&in_cell1, &host).await;
    (st, in_cell0, in_cell1)
}

#[tokio::test]
async fn down_cell_lists_and_show_by_microversion() {
    let (st, zero, one) = two_cells().await;
    let before = st
        .get(&format!("/v2.1/servers/{one}"), ALICE, Some("2.69"))
        .await;
    assert_eq!(before.body["server"]["status"], "ACTIVE");
    assert!(st.engine.world().health.set_down(&CellName::cell1(), true));

    // Below 2.69: the down cell's instances are skipped; the other cell answers.
    let r = st.get("/v2.1/servers", ALICE, Some("2.68")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(ids(&r.body), vec![zero.clone()]);
    let r = st.get("/v2.1/servers/detail", ALICE, Some("2.68")).await;
    assert_eq!(ids(&r.body), vec![zero.clone()]);
    assert_eq!(r.body["servers"][0]["status"], "ERROR");
    let r = st
        .get(&format!("/v2.1/servers/{one}"), ALICE, Some("2.68"))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    let msg = r.body["serviceUnavailable"]["message"].as_str().unwrap();
    assert!(
        msg.contains("cell1") && msg.contains("not responding"),
        "{msg}"
    );
    let r = st
        .get(&format!("/v2.1/servers/{zero}"), ALICE, Some("2.68"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["server"]["status"], "ERROR");

    // From 2.69: partial records first (as Nova prefixes them), then the others.
    let r = st.get("/v2.1/servers", ALICE, Some("2.69")).await;
    assert_eq!(ids(&r.body), vec![one.clone(), zero.clone()]);
    let partial = &r.body["servers"][0];
    assert_eq!(keys(partial), set(&["id", "status", "links"]));
    assert_eq!(partial["status"], "UNKNOWN");
    assert_eq!(
        partial["links"][0]["href"],
        format!("{}/v2.1/servers/{one}", st.base)
    );
    assert!(r.body["servers"][1]["name"].is_string());

    let r = st.get("/v2.1/servers/detail", ALICE, Some("2.69")).await;
    assert_eq!(ids(&r.body), vec![one.clone(), zero.clone()]);
    let partial = &r.body["servers"][0];
    assert_eq!(
        keys(partial),
        set(&["id", "status", "tenant_id", "created", "links"])
    );
    assert_eq!(partial["tenant_id"], "p1");
    assert_eq!(partial["created"], before.body["server"]["created"]);
    assert_eq!(r.body["servers"][1]["status"], "ERROR");

    // Filters, paging or sorting: Nova cannot answer them for a down cell, so skips it.
    for q in [
        "?limit=10",
        "?name=o",
        "?sort_key=display_name",
        "?status=ERROR",
    ] {
        let r = st
            .get(&format!("/v2.1/servers/detail{q}"), ALICE, Some("2.69"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{q}: {}", r.body);
        assert!(!ids(&r.body).contains(&one), "{q}: {}", r.body);
    }

    // Show at 2.69: the partial record of Nova's 2.69 sample (server-get-resp.json).
    let r = st
        .get(&format!("/v2.1/servers/{one}"), ALICE, Some("2.69"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let s = &r.body["server"];
    assert_eq!(
        keys(s),
        set(&[
            "OS-EXT-AZ:availability_zone",
            "OS-EXT-STS:power_state",
            "created",
            "flavor",
            "id",
            "image",
            "status",
            "tenant_id",
            "user_id",
            "links"
        ])
    );
    assert_eq!(s["status"], "UNKNOWN");
    assert_eq!(s["OS-EXT-STS:power_state"], 0);
    assert_eq!(s["OS-EXT-AZ:availability_zone"], "UNKNOWN");
    assert_eq!(s["user_id"], "alice");
    assert_eq!(s["image"]["id"], "70a599e0-31e7-49b7-b260-868f441e862b");
    assert_eq!(
        keys(&s["flavor"]),
        set(&[
            "disk",
            "ephemeral",
            "extra_specs",
            "original_name",
            "ram",
            "swap",
            "vcpus"
        ])
    );
    assert_eq!(s["flavor"]["original_name"], "m1.tiny");
    // 2.71 adds server_groups to show, as for any server.
    let r = st
        .get(&format!("/v2.1/servers/{one}"), ALICE, Some("2.71"))
        .await;
    assert_eq!(r.body["server"]["server_groups"], json!([]));
    // Another project still gets a 404, never the partial record.
    let r = st
        .get(&format!("/v2.1/servers/{one}"), BOB, Some("2.69"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Back up: the full record again, from the same folded state.
    assert!(st.engine.world().health.set_down(&CellName::cell1(), false));
    let r = st
        .get(&format!("/v2.1/servers/{one}"), ALICE, Some("2.69"))
        .await;
    assert_eq!(r.body, before.body);
    let r = st.get("/v2.1/servers", ALICE, Some("2.68")).await;
    assert_eq!(ids(&r.body), vec![one, zero]);
}

#[tokio::test]
async fn changes_to_a_down_cell_instance_are_refused_and_append_nothing() {
    let (st, zero, one) = two_cells().await;
    st.engine.world().health.set_down(&CellName::cell1(), true);
    let before = st.positions().await;
    for v in ["2.68", "2.69", "2.96"] {
        let r = st
            .post(
                &format!("/v2.1/servers/{one}/action"),
                ALICE,
                Some(v),
                json!({"pause": null}),
            )
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{v}: {}", r.body);
        assert!(r.body["serviceUnavailable"]["message"]
            .as_str()
            .unwrap()
            .contains("cell1"));
        let r = st
            .call(
                Method::PUT,
                &format!("/v2.1/servers/{one}"),
                Some(ALICE),
                Some(v),
                Some(json!({"server": {"name": "renamed"}})),
            )
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{v}: {}", r.body);
        let r = st
            .call(
                Method::DELETE,
                &format!("/v2.1/servers/{one}"),
                Some(ALICE),
                Some(v),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{v}: {}", r.body);
    }
    assert_eq!(st.positions().await, before, "nothing appended");

    // The other cell keeps working: delete the cell0 server.
    let r = st
        .call(
            Method::DELETE,
            &format!("/v2.1/servers/{zero}"),
            Some(ALICE),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = st.get(&format!("/v2.1/servers/{zero}"), ALICE, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // And once the cell is back, the refused action goes through.
    st.engine.world().health.set_down(&CellName::cell1(), false);
    let r = st
        .post(
            &format!("/v2.1/servers/{one}/action"),
            ALICE,
            None,
            json!({"pause": null}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
}
