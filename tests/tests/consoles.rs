//! Remote consoles end to end (issue 12): `POST /servers/{id}/remote-consoles` (2.6+) and
//! `os-getVNCConsole` give a noVNC URL whose token `GET /os-console-auth-tokens/{token}`
//! (admin, 2.31+) resolves to the server's console; other protocols are refused as
//! Nova's default configuration does; tokens survive a restart and stop working when
//! the server moves or is deleted.

use reqwest::Method as M;
use serde_json::{json, Value};
use tests::Harness;

const ADMIN: &str = "admin:admin";
const ALICE: &str = "alice:proj-a";

async fn console(h: &Harness, id: &str, protocol: &str, kind: &str) -> (u16, Value) {
    h.req_at(
        ALICE,
        M::POST,
        &format!("/servers/{id}/remote-consoles"),
        "2.8",
        Some(json!({"remote_console": {"protocol": protocol, "type": kind}})),
    )
    .await
}

fn token_of(url: &str) -> String {
    url.split("%3Ftoken%3D")
        .nth(1)
        .expect("token in the url")
        .to_string()
}

async fn check_token(h: &Harness, token: &str) -> (u16, Value) {
    h.req_at(
        ADMIN,
        M::GET,
        &format!("/os-console-auth-tokens/{token}"),
        "2.31",
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_urls_carry_tokens_the_proxy_can_check() {
    let h = Harness::start(|o| o.hosts = 2).await;
    let id = h.create(ALICE, "c", "1").await;
    h.wait(&id, "ACTIVE").await;

    let (code, v) = console(&h, &id, "vnc", "novnc").await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["remote_console"]["protocol"], "vnc");
    assert_eq!(v["remote_console"]["type"], "novnc");
    let url = v["remote_console"]["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with("http://127.0.0.1:6080/vnc_auto.html?path=%3Ftoken%3D"),
        "{url}"
    );
    let token = token_of(&url);
    let (code, v) = check_token(&h, &token).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["console"]["instance_uuid"], id.as_str());
    assert_eq!(v["console"]["host"], "127.0.0.1");
    assert!(v["console"]["port"].as_u64().unwrap() >= 5900);
    assert!(v["console"]["internal_access_path"].is_null());
    // Admin only, from 2.31; a forged or altered token is not found.
    let (code, _) = h
        .req_at(
            ALICE,
            M::GET,
            &format!("/os-console-auth-tokens/{token}"),
            "2.31",
            None,
        )
        .await;
    assert_eq!(code, 403);
    let (code, _) = h
        .req_at(
            ADMIN,
            M::GET,
            &format!("/os-console-auth-tokens/{token}"),
            "2.30",
            None,
        )
        .await;
    assert_eq!(code, 400);
    let mut forged = token.clone().into_bytes();
    let last = forged.len() - 3;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let (code, v) = check_token(&h, &String::from_utf8(forged).unwrap()).await;
    assert_eq!(
        (code, v["itemNotFound"]["message"].as_str()),
        (404, Some("Token not found"))
    );
    let (code, _) = check_token(&h, "not-a-token").await;
    assert_eq!(code, 404);

    // The 2.1-2.5 action.
    let (code, v) = h
        .req_at(
            ALICE,
            M::POST,
            &format!("/servers/{id}/action"),
            "2.1",
            Some(json!({"os-getVNCConsole": {"type": "novnc"}})),
        )
        .await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["console"]["type"], "novnc");
    let (code, _) = check_token(&h, &token_of(v["console"]["url"].as_str().unwrap())).await;
    assert_eq!(code, 200);
    // Versioned methods of 2.1-2.5: from 2.6 no method matches (Nova's 404), whatever
    // the body.
    for body in [
        json!({"os-getVNCConsole": {"type": "novnc"}}),
        json!({"os-getSPICEConsole": {"type": "bogus"}}),
        json!({"os-getSerialConsole": {"type": "serial"}}),
        json!({"os-getRDPConsole": {}}),
    ] {
        let (code, v) = h
            .req_at(
                ALICE,
                M::POST,
                &format!("/servers/{id}/action"),
                "2.6",
                Some(body.clone()),
            )
            .await;
        assert_eq!(code, 404, "{body}: {v}");
    }

    // Refusals, in Nova's words.
    for (protocol, kind, want, msg) in [
        ("vnc", "xvpvnc", 400, "Invalid console type xvpvnc"),
        (
            "spice",
            "spice-html5",
            400,
            "Unavailable console type spice-html5.",
        ),
        ("serial", "serial", 400, "Unavailable console type serial."),
        ("rdp", "rdp-html5", 400, "Unavailable console type rdp."),
        (
            "mks",
            "webmks",
            501,
            "The requested functionality is not supported.",
        ),
    ] {
        let (code, v) = console(&h, &id, protocol, kind).await;
        assert_eq!(code, want, "{protocol}/{kind}: {v}");
        let m = v.as_object().unwrap().values().next().unwrap()["message"].clone();
        assert_eq!(m, msg, "{protocol}/{kind}");
    }
    for body in [
        json!({"remote_console": {"protocol": "telnet", "type": "novnc"}}),
        json!({"remote_console": {"protocol": "vnc"}}),
        json!({"remote_console": {"protocol": "mks", "type": "webmks"}}),
        json!({"remote_console": {"protocol": "vnc", "type": "novnc", "x": 1}}),
    ] {
        let (code, v) = h
            .req_at(
                ALICE,
                M::POST,
                &format!("/servers/{id}/remote-consoles"),
                "2.6",
                Some(body.clone()),
            )
            .await;
        assert_eq!(code, 400, "{body}: {v}");
    }
    let (code, _) = h
        .req_at(
            ALICE,
            M::POST,
            &format!("/servers/{id}/remote-consoles"),
            "2.5",
            Some(json!({"remote_console": {"protocol": "vnc", "type": "novnc"}})),
        )
        .await;
    assert_eq!(code, 404);
    let (code, _) = h
        .req_at(
            "bob:proj-b",
            M::POST,
            &format!("/servers/{id}/remote-consoles"),
            "2.6",
            Some(json!({"remote_console": {"protocol": "vnc", "type": "novnc"}})),
        )
        .await;
    assert_eq!(code, 404);

    // A restart keeps the token valid (it is derived, not stored).
    let h = h.restart(|o| o.hosts = 2).await;
    let (code, _) = check_token(&h, &token).await;
    assert_eq!(code, 200);

    // A move ends it (Nova deletes a server's console tokens when it moves).
    let (code, v) = h
        .req_at(
            ADMIN,
            M::POST,
            &format!("/servers/{id}/action"),
            "2.30",
            Some(json!({"os-migrateLive": {"host": null, "block_migration": "auto"}})),
        )
        .await;
    assert_eq!(code, 202, "{v}");
    h.wait(&id, "ACTIVE").await;
    let (code, _) = check_token(&h, &token).await;
    assert_eq!(code, 404);
    // A fresh one works; deleting the server ends it.
    let (_, v) = console(&h, &id, "vnc", "novnc").await;
    let token = token_of(v["remote_console"]["url"].as_str().unwrap());
    assert_eq!(check_token(&h, &token).await.0, 200);
    let (code, _) = h
        .req_at(ALICE, M::DELETE, &format!("/servers/{id}"), "2.1", None)
        .await;
    assert_eq!(code, 204);
    h.wait(&id, "GONE").await;
    assert_eq!(check_token(&h, &token).await.0, 404);

    // A server on no host has no console: 409.
    let id = h.create(ALICE, "s", "1").await;
    h.wait(&id, "ACTIVE").await;
    h.action(ALICE, &id, json!({"shelve": null}), 202).await;
    h.wait(&id, "SHELVED_OFFLOADED").await;
    let (code, v) = console(&h, &id, "vnc", "novnc").await;
    assert_eq!(code, 409, "{v}");
    assert_eq!(
        v["conflictingRequest"]["message"],
        format!("Instance {id} is not ready")
    );
}

/// os-networks (2.1-2.35): Nova's proxy to the networks the project sees (the default
/// `public` and `private`); an unknown one is a 404; gone from 2.36.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_are_neutrons_and_gone_from_2_36() {
    let h = Harness::start(|_| {}).await;
    let (code, v) = h
        .req_at("alice:proj-a:reader", M::GET, "/os-networks", "2.35", None)
        .await;
    assert_eq!(code, 200, "{v}");
    let mut labels: Vec<&str> = v["networks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["label"].as_str().unwrap())
        .collect();
    labels.sort();
    assert_eq!(labels, ["private", "public"]);
    let (code, v) = h
        .req_at(ALICE, M::GET, "/os-networks/private", "2.1", None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(v["itemNotFound"]["message"], "Network not found");
    let (code, _) = h.req_at(ALICE, M::GET, "/os-networks", "2.36", None).await;
    assert_eq!(code, 404);
}

/// Security groups on a server: Neutron's, on ports a Stratus server does not have, so
/// Nova's answers for a port-less server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_group_actions_answer_as_for_a_server_without_ports() {
    let h = Harness::start(|_| {}).await;
    let id = h.create(ALICE, "sg", "1").await;
    h.wait(&id, "ACTIVE").await;
    let (code, v) = h
        .req_at(
            ALICE,
            M::GET,
            &format!("/servers/{id}/os-security-groups"),
            "2.1",
            None,
        )
        .await;
    assert_eq!((code, v), (200, json!({"security_groups": []})));
    for (body, want, msg) in [
        (
            json!({"removeSecurityGroup": {"name": "default"}}),
            404,
            format!("instance_id {id} could not be found as device id on any ports"),
        ),
        (
            json!({"addSecurityGroup": {"name": "web"}}),
            404,
            "Security group web is not found for project proj-a".to_string(),
        ),
        (
            json!({"addSecurityGroup": null}),
            400,
            "Missing parameter dict".to_string(),
        ),
        (
            json!({"addSecurityGroup": {}}),
            400,
            "Security group not specified".to_string(),
        ),
        (
            json!({"removeSecurityGroup": {"name": " "}}),
            400,
            "Security group name cannot be empty".to_string(),
        ),
    ] {
        let (code, v) = h
            .req_at(
                ALICE,
                M::POST,
                &format!("/servers/{id}/action"),
                "2.1",
                Some(body.clone()),
            )
            .await;
        assert_eq!(code, want, "{body}: {v}");
        let m = v.as_object().unwrap().values().next().unwrap()["message"].clone();
        assert_eq!(m, json!(msg), "{body}");
    }
    let (code, _) = h
        .req_at(
            "alice:proj-a:reader",
            M::POST,
            &format!("/servers/{id}/action"),
            "2.1",
            Some(json!({"addSecurityGroup": {"name": "default"}})),
        )
        .await;
    assert_eq!(code, 403);
}
