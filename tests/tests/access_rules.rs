//! Application credential access rules end to end, over real HTTP on the all-in-one
//! with Keystone tokens: rules given at creation (checked as Keystone's schema checks
//! them; a refusal appends nothing), shown with the credential, in its tokens, listed,
//! shown and deleted under `/v3/users/{id}/access_rules`; an identical rule is reused;
//! a rule in use cannot be deleted; and the compute, image and identity APIs honour a
//! limited token only for the requests one of its rules allows (401 otherwise). A
//! restart and a `replay rebuild` keep it all.

use reqwest::Method as M;
use serde_json::{json, Value};
use stratus::stack::AuthKind;
use tests::Harness;

const PASSWORD: &str = "s3cret-admin";

/// One answer: status, `X-Subject-Token`, JSON body (Null if none).
type Answer = (u16, Option<String>, Value);

async fn send(rb: reqwest::RequestBuilder) -> Answer {
    let r = rb.send().await.unwrap();
    let code = r.status().as_u16();
    let token = r
        .headers()
        .get("x-subject-token")
        .map(|t| t.to_str().unwrap().to_string());
    let bytes = r.bytes().await.unwrap();
    (
        code,
        token,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// A request to the identity (`/v3...`), compute (`/v2.1...`) or image (`/v2...`) API.
async fn call(h: &Harness, method: M, path: &str, token: &str, body: Option<Value>) -> Answer {
    let addr = if path.starts_with("/v3") {
        h.stack.identity_addr.unwrap()
    } else if path.starts_with("/v2.1") {
        h.stack.addr
    } else {
        h.stack.image_addr.unwrap()
    };
    let mut rb = h
        .http
        .request(method, format!("http://{addr}{path}"))
        .header("OpenStack-API-Version", "compute 2.96");
    if !token.is_empty() {
        rb = rb.header("X-Auth-Token", token);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    send(rb).await
}

async fn api_len(h: &Harness) -> u64 {
    h.stack
        .engine
        .log()
        .last_stream_seq(&eventlog::StreamName::api())
        .await
        .unwrap()
}

async fn start() -> Harness {
    Harness::start(|o| {
        o.auth = AuthKind::Keystone;
        o.admin_password = Some(PASSWORD.into());
    })
    .await
}

/// The admin's password token, its user id.
async fn admin_token(h: &Harness) -> (String, String) {
    let auth = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": PASSWORD}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}});
    let (code, token, body) = call(h, M::POST, "/v3/auth/tokens", "", Some(auth)).await;
    assert_eq!(code, 201, "{body}");
    (
        token.unwrap(),
        body["token"]["user"]["id"].as_str().unwrap().to_string(),
    )
}

/// A token of an application credential.
async fn cred_token(h: &Harness, cred: &Value) -> (String, Value) {
    let auth = json!({"auth": {"identity": {"methods": ["application_credential"],
        "application_credential": {"id": cred["id"], "secret": cred["secret"]}}}});
    let (code, token, body) = call(h, M::POST, "/v3/auth/tokens", "", Some(auth)).await;
    assert_eq!(code, 201, "{body}");
    (token.unwrap(), body)
}

fn rule(service: &str, method: &str, path: &str) -> Value {
    json!({"service": service, "method": method, "path": path})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_rules_limit_tokens_and_are_user_events() {
    let h = start().await;
    let (admin, user) = admin_token(&h).await;
    let creds = format!("/v3/users/{user}/application_credentials");
    let rules_path = format!("/v3/users/{user}/access_rules");
    let create = |name: &str, rules: Value| json!({"application_credential": {"name": name, "access_rules": rules}});

    // Bad rules: Keystone's schema messages, nothing appended.
    let before = api_len(&h).await;
    let bad = [
        (
            json!("x"),
            "Invalid input for field/attribute access_rules. Value: x. 'x' is not of type 'array'",
        ),
        (
            json!([5]),
            "Invalid input for field/attribute 0. Value: 5. 5 is not of type 'object'",
        ),
        (
            json!([{"service": "compute", "path": "/v2.1/servers"}]),
            "Invalid input for field/attribute 0. Value: {'path': '/v2.1/servers', 'service': 'compute'}. 'method' is a required property",
        ),
        (
            json!([rule("compute", "FETCH", "/v2.1/servers")]),
            "Invalid input for field/attribute method. Value: FETCH. 'FETCH' is not one of ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT']",
        ),
        (
            json!([rule("compute", "GET", "v2.1/servers")]),
            "Invalid input for field/attribute path. Value: v2.1/servers. 'v2.1/servers' does not match '^/\\\\.*'",
        ),
        (
            json!([rule("com pute", "GET", "/v2.1/servers")]),
            "Invalid input for field/attribute service. Value: com pute. 'com pute' does not match '^[a-zA-Z0-9-]+$'",
        ),
        (
            json!([rule("compute", "GET", &format!("/{}", "a".repeat(225)))]),
            "is too long",
        ),
    ];
    for (rules, message) in bad {
        let (code, _, v) = call(&h, M::POST, &creds, &admin, Some(create("bad", rules))).await;
        assert_eq!(code, 400, "{v}");
        let got = v["error"]["message"].as_str().unwrap();
        assert!(got.ends_with(message), "{got}");
    }
    let (code, _, v) = call(
        &h,
        M::POST,
        &creds,
        &admin,
        Some(create("bad", json!([{"id": "0123abcd"}]))),
    )
    .await;
    assert_eq!(code, 404, "{v}");
    assert_eq!(
        v["error"]["message"],
        "Could not find Access Rule: 0123abcd."
    );
    assert_eq!(api_len(&h).await, before, "refusals append nothing");

    // A credential limited to a few requests.
    let wanted = json!([
        rule("compute", "GET", "/v2.1/servers"),
        rule("compute", "GET", "/v2.1/flavors/*"),
        rule("image", "GET", "/v2/images"),
        rule("identity", "GET", "/v3/users/*/access_rules"),
    ]);
    let (code, _, v) = call(
        &h,
        M::POST,
        &creds,
        &admin,
        Some(create("limited", wanted.clone())),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let limited = v["application_credential"].clone();
    let shown_rules = limited["access_rules"].as_array().unwrap().clone();
    assert_eq!(shown_rules.len(), 4);
    for (got, want) in shown_rules.iter().zip(wanted.as_array().unwrap()) {
        let mut got = got.clone();
        assert_eq!(got["id"].as_str().unwrap().len(), 32, "{got}");
        got.as_object_mut().unwrap().remove("id");
        assert_eq!(&got, want);
    }
    let cid = limited["id"].as_str().unwrap();
    let (code, _, shown) = call(&h, M::GET, &format!("{creds}/{cid}"), &admin, None).await;
    assert_eq!(code, 200);
    assert_eq!(
        shown["application_credential"]["access_rules"],
        limited["access_rules"]
    );

    // Its token carries the rules, and the APIs honour it only where they allow.
    let (tok, body) = cred_token(&h, &limited).await;
    assert_eq!(
        body["token"]["application_credential"]["access_rules"],
        limited["access_rules"]
    );
    let denied = json!({"error": {"code": 401, "title": "Unauthorized",
        "message": "The request you have made requires authentication."}});
    let cases = [
        (M::GET, "/v2.1/servers".to_string(), 200),
        (M::GET, "/v2.1/servers/detail".to_string(), 401),
        (M::GET, "/v2.1/flavors/1".to_string(), 200),
        (M::GET, "/v2.1/flavors/1/os-extra_specs".to_string(), 401),
        (M::GET, "/v2.1/flavors".to_string(), 401),
        (M::GET, "/v2/images".to_string(), 200),
        (M::GET, "/v2/schemas/image".to_string(), 401),
        (M::GET, rules_path.clone(), 200),
        (M::GET, "/v3/projects".to_string(), 401),
        (M::GET, creds.clone(), 401),
    ];
    for (method, path, want) in cases {
        let (code, _, v) = call(&h, method.clone(), &path, &tok, None).await;
        assert_eq!(code, want, "{method} {path}: {v}");
        if want == 401 && path.starts_with("/v2.1") {
            assert_eq!(v, denied, "{path}");
        }
    }
    let before = api_len(&h).await;
    let server = json!({"server": {"name": "x", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b",
        "flavorRef": "1", "networks": "none"}});
    let (code, _, v) = call(&h, M::POST, "/v2.1/servers", &tok, Some(server.clone())).await;
    assert_eq!(code, 401, "{v}");
    assert_eq!(api_len(&h).await, before, "a refused token appends nothing");
    // Validating its own token is always allowed (keystonemiddleware's exception).
    let rb = h
        .http
        .get(format!(
            "http://{}/v3/auth/tokens",
            h.stack.identity_addr.unwrap()
        ))
        .header("X-Auth-Token", &tok)
        .header("X-Subject-Token", &tok);
    assert_eq!(send(rb).await.0, 200);

    // A credential without rules is not limited.
    let (code, _, v) = call(&h, M::POST, &creds, &admin, Some(create("free", json!([])))).await;
    assert_eq!(code, 201, "{v}");
    let free = v["application_credential"].clone();
    assert_eq!(free["access_rules"], json!([]));
    let (free_tok, body) = cred_token(&h, &free).await;
    assert!(body["token"]["application_credential"]
        .get("access_rules")
        .is_none());
    let (code, _, _) = call(&h, M::GET, "/v2.1/flavors", &free_tok, None).await;
    assert_eq!(code, 200);

    // An identical rule, or one named by id, is the stored one.
    let image_rule = shown_rules[2]["id"].as_str().unwrap();
    let (code, _, v) = call(
        &h,
        M::POST,
        &creds,
        &admin,
        Some(create(
            "again",
            json!([rule("compute", "GET", "/v2.1/servers"), {"id": image_rule}]),
        )),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let again = v["application_credential"].clone();
    assert_eq!(again["access_rules"][0], shown_rules[0]);
    assert_eq!(again["access_rules"][1], shown_rules[2]);
    let (code, _, list) = call(&h, M::GET, &rules_path, &admin, None).await;
    assert_eq!(code, 200);
    assert_eq!(list["access_rules"].as_array().unwrap().len(), 4, "{list}");
    let (_, _, filtered) = call(
        &h,
        M::GET,
        &format!("{rules_path}?service=image"),
        &admin,
        None,
    )
    .await;
    assert_eq!(filtered["access_rules"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["access_rules"][0]["id"], image_rule);

    // In use: a 403 that appends nothing; free again once its credentials are gone.
    let rid = shown_rules[0]["id"].as_str().unwrap();
    let before = api_len(&h).await;
    let (code, _, v) = call(&h, M::DELETE, &format!("{rules_path}/{rid}"), &admin, None).await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["error"]["message"], "May not delete access rule in use");
    assert_eq!(api_len(&h).await, before);
    for c in [&limited, &again] {
        let (code, _, _) = call(
            &h,
            M::DELETE,
            &format!("{creds}/{}", c["id"].as_str().unwrap()),
            &admin,
            None,
        )
        .await;
        assert_eq!(code, 204);
    }
    let (code, _, _) = call(&h, M::GET, "/v2.1/servers", &tok, None).await;
    assert_eq!(code, 401, "its credential is gone");
    let (code, _, shown) = call(&h, M::GET, &format!("{rules_path}/{rid}"), &admin, None).await;
    assert_eq!(code, 200, "rules outlive their credentials");
    assert_eq!(shown["access_rule"]["path"], "/v2.1/servers");
    let (code, _, _) = call(&h, M::DELETE, &format!("{rules_path}/{rid}"), &admin, None).await;
    assert_eq!(code, 204);
    let (code, _, v) = call(&h, M::GET, &format!("{rules_path}/{rid}"), &admin, None).await;
    assert_eq!(code, 404);
    assert_eq!(
        v["error"]["message"],
        format!("Could not find Access Rule: {rid}.")
    );
    let (_, _, list) = call(&h, M::GET, &rules_path, &admin, None).await;
    let before_restart = list.clone();
    assert_eq!(list["access_rules"].as_array().unwrap().len(), 3, "{list}");

    // A credential limited to the image API, across a restart.
    let (code, _, v) = call(
        &h,
        M::POST,
        &creds,
        &admin,
        Some(create(
            "images",
            json!([rule("image", "GET", "/v2/images/**")]),
        )),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let images = v["application_credential"].clone();
    let (img_tok, _) = cred_token(&h, &images).await;
    let h = h
        .restart(|o| {
            o.auth = AuthKind::Keystone;
            o.admin_password = Some(PASSWORD.into());
        })
        .await;
    let (code, _, v) = call(&h, M::GET, "/v2/images", &img_tok, None).await;
    assert_eq!(
        code, 401,
        "/v2/images/** needs a segment after /v2/images: {v}"
    );
    let (code, _, v) = call(
        &h,
        M::GET,
        "/v2/images/70a599e0-31e7-49b7-b260-868f441e862b",
        &img_tok,
        None,
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, _, _) = call(&h, M::GET, "/v2.1/servers", &img_tok, None).await;
    assert_eq!(code, 401);
    let (_, _, list) = call(&h, M::GET, &rules_path, &admin, None).await;
    assert_eq!(list["access_rules"].as_array().unwrap().len(), 4);
    let mut first_three = list.clone();
    first_three["access_rules"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["path"] != "/v2/images/**");
    first_three["links"] = Value::Null;
    let mut before_restart = before_restart;
    before_restart["links"] = Value::Null;
    // Same rules (their links name the new port).
    let strip = |v: &mut Value| {
        for r in v["access_rules"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("links");
        }
    };
    strip(&mut first_three);
    strip(&mut before_restart);
    assert_eq!(first_three, before_restart);

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}
