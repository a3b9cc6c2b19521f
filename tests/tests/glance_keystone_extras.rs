//! Issue 12's Glance and Keystone leftovers end to end, over real HTTP on the
//! all-in-one: image deactivate / reactivate, metadata definitions, tasks and EC2
//! credentials are events, so a restart and a `replay rebuild` give back the same read
//! models.

use reqwest::Method as M;
use serde_json::{json, Value};
use stratus::stack::AuthKind;
use tests::Harness;

const ADMIN: &str = "root:p1:admin";
const MEMBER: &str = "alice:p1:member";
const OTHER: &str = "bob:p2:member";

async fn glance(
    h: &Harness,
    token: &str,
    method: M,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    h.glance(token, method, path, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivate_metadefs_and_tasks_survive_restart_and_replay() {
    let h = Harness::start(|_| {}).await;
    let addr = h.stack.image_addr.unwrap();

    // An active image of p1, deactivated by its owner: readers of it see it, its data
    // is a 403 for non-admins (Glance's message), an admin may still download it.
    let (code, img) = glance(
        &h,
        MEMBER,
        M::POST,
        "/v2/images",
        Some(json!({"name": "d", "disk_format": "raw", "container_format": "bare"})),
    )
    .await;
    assert_eq!(code, 201, "{img}");
    let id = img["id"].as_str().unwrap().to_string();
    let r = h
        .http
        .put(format!("http://{addr}/v2/images/{id}/file"))
        .header("X-Auth-Token", MEMBER)
        .header("Content-Type", "application/octet-stream")
        .body(vec![7u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let deactivate = format!("/v2/images/{id}/actions/deactivate");
    let reactivate = format!("/v2/images/{id}/actions/reactivate");
    let (code, _) = glance(&h, "carol:p1:reader", M::POST, &deactivate, None).await;
    assert_eq!(code, 403, "a reader may not deactivate");
    let (code, _) = glance(&h, OTHER, M::POST, &deactivate, None).await;
    assert_eq!(code, 404, "another project's private image stays hidden");
    for _ in 0..2 {
        // The second call is Glance's no-op.
        let (code, v) = glance(&h, MEMBER, M::POST, &deactivate, None).await;
        assert_eq!(code, 204, "{v}");
    }
    let (_, shown) = glance(&h, MEMBER, M::GET, &format!("/v2/images/{id}"), None).await;
    assert_eq!(shown["status"], "deactivated");
    let (code, v) = glance(&h, MEMBER, M::GET, &format!("/v2/images/{id}/file"), None).await;
    assert_eq!(code, 403);
    assert_eq!(
        v["message"],
        "The requested image has been deactivated. Image data download is forbidden."
    );
    let r = h
        .http
        .get(format!("http://{addr}/v2/images/{id}/file"))
        .header("X-Auth-Token", ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), 4096);
    // The compute API refuses to boot it (not active).
    let body =
        json!({"server": {"name": "s", "imageRef": id, "flavorRef": "1", "networks": "none"}});
    let (code, r) = h.req("alice:p1", M::POST, "/servers", Some(body)).await;
    assert_eq!(code, 400, "{r}");

    // A queued image can be neither deactivated nor reactivated (403, Glance's text).
    let (_, q) = glance(
        &h,
        MEMBER,
        M::POST,
        "/v2/images",
        Some(json!({"name": "q"})),
    )
    .await;
    let qid = q["id"].as_str().unwrap();
    let (code, v) = glance(
        &h,
        MEMBER,
        M::POST,
        &format!("/v2/images/{qid}/actions/reactivate"),
        None,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        v["message"],
        "Not allowed to reactivate image in status 'queued'"
    );

    // Metadefs: admin-written, readable by readers; a protected namespace resists.
    let (code, ns) = glance(
        &h,
        ADMIN,
        M::POST,
        "/v2/metadefs/namespaces",
        Some(
            json!({"namespace": "OS::Demo", "visibility": "public", "protected": true,
            "resource_type_associations": [{"name": "OS::Glance::Image", "prefix": "hw_"}]}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{ns}");
    assert_eq!(ns["owner"], "p1");
    let (code, _) = glance(
        &h,
        MEMBER,
        M::POST,
        "/v2/metadefs/namespaces",
        Some(json!({"namespace": "x"})),
    )
    .await;
    assert_eq!(code, 403);
    let (code, v) = glance(
        &h,
        ADMIN,
        M::POST,
        "/v2/metadefs/namespaces",
        Some(json!({"namespace": "OS::Demo"})),
    )
    .await;
    assert_eq!(code, 409, "{v}");
    let base = "/v2/metadefs/namespaces/OS::Demo";
    let (code, v) = glance(
        &h,
        ADMIN,
        M::POST,
        &format!("{base}/objects"),
        Some(json!({"name": "CPU",
        "properties": {"cores": {"title": "Cores", "type": "integer"}}})),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (code, v) = glance(&h, ADMIN, M::POST, &format!("{base}/properties"),
        Some(json!({"name": "hypervisor", "title": "Hypervisor", "type": "string", "enum": ["kvm", "qemu"]}))).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["enum"], json!(["kvm", "qemu"]));
    let (code, v) = glance(
        &h,
        ADMIN,
        M::POST,
        &format!("{base}/properties"),
        Some(json!({"name": "bad", "title": "Bad", "type": "color"})),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    let (code, v) = glance(
        &h,
        ADMIN,
        M::POST,
        &format!("{base}/tags"),
        Some(json!({"tags": [{"name": "a"}, {"name": "b"}]})),
    )
    .await;
    assert_eq!(code, 201, "{v}");
    let (code, _) = glance(&h, ADMIN, M::POST, &format!("{base}/tags/A"), None).await;
    assert_eq!(code, 409, "tag names are case-insensitive");
    let (code, v) = glance(
        &h,
        ADMIN,
        M::PUT,
        &format!("{base}/tags/a"),
        Some(json!({"name": "c"})),
    )
    .await;
    assert_eq!((code, v["name"].as_str()), (200, Some("c")));
    let (code, v) = glance(&h, ADMIN, M::DELETE, &format!("{base}/tags/c"), None).await;
    assert_eq!(code, 403, "protected: {v}");
    let (code, v) = glance(&h, ADMIN, M::DELETE, base, None).await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(
        v["message"],
        "Metadata definition namespace OS::Demo is protected and cannot be deleted."
    );
    let (code, full) = glance(&h, "carol:p2:reader", M::GET, base, None).await;
    assert_eq!(code, 200, "{full}");
    assert_eq!(full["objects"][0]["name"], "CPU");
    assert_eq!(full["properties"]["hypervisor"]["title"], "Hypervisor");
    assert_eq!(full["resource_type_associations"][0]["prefix"], "hw_");
    let (_, types) = glance(&h, MEMBER, M::GET, "/v2/metadefs/resource_types", None).await;
    assert!(types["resource_types"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "OS::Nova::Flavor"));
    // A private namespace of p1 is a 404 to p2.
    let (code, _) = glance(
        &h,
        ADMIN,
        M::POST,
        "/v2/metadefs/namespaces",
        Some(json!({"namespace": "Mine"})),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = glance(&h, OTHER, M::GET, "/v2/metadefs/namespaces/Mine", None).await;
    assert_eq!(code, 404);

    // Tasks: admin-only; a file:// import is refused, an http one recorded and failed.
    let task = |uri: &str| {
        json!({"type": "import", "input": {"import_from": uri,
        "import_from_format": "qcow2", "image_properties": {"disk_format": "qcow2"}}})
    };
    let (code, _) = glance(
        &h,
        MEMBER,
        M::POST,
        "/v2/tasks",
        Some(task("http://example.invalid/x")),
    )
    .await;
    assert_eq!(code, 403);
    let (code, v) = glance(
        &h,
        ADMIN,
        M::POST,
        "/v2/tasks",
        Some(task("file:///etc/passwd")),
    )
    .await;
    assert_eq!(code, 400, "{v}");
    let (code, t) = glance(
        &h,
        ADMIN,
        M::POST,
        "/v2/tasks",
        Some(task("http://example.invalid/x")),
    )
    .await;
    assert_eq!(code, 201, "{t}");
    assert_eq!(t["status"], "failure");
    let tid = t["id"].as_str().unwrap().to_string();

    let h = h.restart(|_| {}).await;
    let (_, again) = glance(&h, MEMBER, M::GET, &format!("/v2/images/{id}"), None).await;
    assert_eq!(again, shown);
    let (_, again) = glance(&h, "carol:p2:reader", M::GET, base, None).await;
    assert_eq!(again, full);
    let (_, again) = glance(&h, ADMIN, M::GET, &format!("/v2/tasks/{tid}"), None).await;
    assert_eq!(again, t);
    let (code, _) = glance(&h, MEMBER, M::POST, &reactivate, None).await;
    assert_eq!(code, 204);

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
    let store = projections::ProjectionStore::open(&dir.path().join("projections.redb")).unwrap();
    let views = store.load().unwrap();
    let img = views.image(&domain::ImageId::parse(&id).unwrap()).unwrap();
    assert_eq!(img.status, domain::image::ImageStatus::Active);
    let set = views.metadefs().set().0;
    assert_eq!(set.namespaces["OS::Demo"].tags.len(), 2);
    assert!(views.tasks().get(&tid).is_some());
}

/// EC2 credentials through Keystone tokens: created for the caller's user on a
/// project, listed, shown with their secret, deleted (then a 404), kept by a restart
/// and by a replay rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec2_credentials_are_user_events() {
    let h = Harness::start(|o| {
        o.auth = AuthKind::Keystone;
        o.admin_password = Some("s3cret-admin".into());
    })
    .await;
    let id_base = format!("http://{}/v3", h.stack.identity_addr.unwrap());
    let call = |method: M, path: String, token: Option<String>, body: Option<Value>| {
        let mut rb = h.http.request(method, format!("{id_base}{path}"));
        if let Some(t) = token {
            rb = rb.header("X-Auth-Token", t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        async move {
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
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let auth = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": "s3cret-admin"}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}});
    let (code, token, body) = call(M::POST, "/auth/tokens".into(), None, Some(auth)).await;
    assert_eq!(code, 201, "{body}");
    let token = token.unwrap();
    let user = body["token"]["user"]["id"].as_str().unwrap().to_string();
    let project = body["token"]["project"]["id"].as_str().unwrap().to_string();
    let path = format!("/users/{user}/credentials/OS-EC2");

    let (code, _, v) = call(
        M::POST,
        path.clone(),
        Some(token.clone()),
        Some(json!({"tenant_id": "nope"})),
    )
    .await;
    assert_eq!(code, 404, "{v}");
    let (code, _, created) = call(
        M::POST,
        path.clone(),
        Some(token.clone()),
        Some(json!({"tenant_id": project})),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    let c = &created["credential"];
    assert_eq!(c["user_id"], user.as_str());
    assert_eq!(c["tenant_id"], project.as_str());
    assert_eq!(c["access"].as_str().unwrap().len(), 32);
    let access = c["access"].as_str().unwrap().to_string();
    let (code, _, second) = call(
        M::POST,
        path.clone(),
        Some(token.clone()),
        Some(json!({"tenant_id": project})),
    )
    .await;
    assert_eq!(code, 201);
    let (_, _, list) = call(M::GET, path.clone(), Some(token.clone()), None).await;
    assert_eq!(list["credentials"].as_array().unwrap().len(), 2, "{list}");
    let (code, _, shown) = call(
        M::GET,
        format!("{path}/{access}"),
        Some(token.clone()),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(shown["credential"], created["credential"]);
    let second_access = second["credential"]["access"].as_str().unwrap().to_string();
    let (code, _, _) = call(
        M::DELETE,
        format!("{path}/{second_access}"),
        Some(token.clone()),
        None,
    )
    .await;
    assert_eq!(code, 204);
    let (code, _, v) = call(
        M::GET,
        format!("{path}/{second_access}"),
        Some(token.clone()),
        None,
    )
    .await;
    assert_eq!(code, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Could not find credential: "),
        "{v}"
    );

    let h = h
        .restart(|o| {
            o.auth = AuthKind::Keystone;
            o.admin_password = Some("s3cret-admin".into());
        })
        .await;
    let id_base = format!("http://{}/v3", h.stack.identity_addr.unwrap());
    let r = h
        .http
        .get(format!("{id_base}{path}/{access}"))
        .header("X-Auth-Token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // The same credential (its links name the new port).
    let mut again = r.json::<Value>().await.unwrap();
    let mut before = shown.clone();
    again["credential"]["links"] = Value::Null;
    before["credential"]["links"] = Value::Null;
    assert_eq!(again, before);

    let Harness { stack, dir, .. } = h;
    stack.stop().await;
    let report = replay::rebuild_data_dir(dir.path()).await.unwrap();
    assert!(report.matches, "{:?}", report.differences);
}
