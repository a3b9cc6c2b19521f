//! The policy matrix over real HTTP: every row of `api::policy::ENDPOINTS` (and every
//! content-dependent rule of `CONDITIONAL`) x every role (reader, member, manager, admin) x own /
//! other project. The expected outcome is derived from the row's rule only:
//! - another project's server, non-admin: 404;
//! - role not enough: 403 with Nova's `Policy doesn't allow <name> to be performed.`;
//! - allowed: 2xx or a 4xx other than 403/404 (never 5xx);
//!
//! and every refused call (and every GET) leaves the log's last positions unchanged.
//! A new row without a sample request here fails the test until one is added; server
//! actions bring their own (the `example` of their declaration in `api::actions`).

mod common;

use api::policy::{Endpoint, Role, Rule, Target, CONDITIONAL, ENDPOINTS};
use common::Stack;
use domain::HostName;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

const VERSION: &str = "2.90";
const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";
/// A public key for key pair requests.
const PUB: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Own,
    Other,
}

/// Fresh resources for one case.
struct Fixture {
    server: String,
    flavor: String,
    group: String,
    /// host1's hypervisor id before 2.53 (an integer).
    hypervisor: String,
    /// A key pair of the matrix's caller (user `carol`: key pairs are per user).
    keypair: String,
    project: &'static str,
    /// A host aggregate holding the host (so remove_host has a host to remove).
    aggregate: String,
    /// The request id of the server's create (an os-instance-actions request id).
    create_request: String,
    /// A webhook subscription (admin-made; a case may delete it).
    subscription: String,
    /// A private flavor whose access list names project `p9` (for os-flavor-access).
    private_flavor: String,
}

async fn fixture(s: &Stack, host: &HostName, owner: Owner) -> Fixture {
    let token = match owner {
        Owner::Own => "alice:p1",
        Owner::Other => "bob:p2",
    };
    let server = s.server(token, "srv", "f1").await;
    s.make_active(&server, host).await;
    // Something for the metadata item and tag routes to find.
    let r = s
        .post(
            &format!("/v2.1/servers/{server}/metadata"),
            common::ADMIN,
            None,
            json!({"metadata": {"k": "v"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s
        .call(
            Method::PUT,
            &format!("/v2.1/servers/{server}/tags/t"),
            Some(common::ADMIN),
            Some("2.26"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let create_request = s
        .engine
        .world()
        .read()
        .instance_actions()
        .of(&domain::InstanceId::parse(&server).unwrap())
        .and_then(|r| r.action_named("create"))
        .map(|a| a.request_id)
        .expect("the create is recorded");
    let flavor = Uuid::new_v4().to_string();
    s.flavor(&flavor, &format!("fl-{flavor}"), 512, 1).await;
    let r = s
        .post(
            &format!("/v2.1/flavors/{flavor}/os-extra_specs"),
            common::ADMIN,
            None,
            json!({"extra_specs": {"k": "v"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let project = match owner {
        Owner::Own => "p1",
        Owner::Other => "p2",
    };
    let r = s
        .post(
            "/v2.1/os-aggregates",
            common::ADMIN,
            None,
            json!({"aggregate": {"name": format!("agg-{flavor}")}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let aggregate = r.body["aggregate"]["id"].to_string();
    let r = s
        .post(
            &format!("/v2.1/os-aggregates/{aggregate}/action"),
            common::ADMIN,
            None,
            json!({"add_host": {"host": host.as_str()}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s
        .call(
            Method::GET,
            "/v2.1/os-hypervisors",
            Some(common::ADMIN),
            Some("2.52"),
            None,
        )
        .await;
    let hypervisor = r.body["hypervisors"][0]["id"].to_string();
    // One key pair, made again after a case deleted it (a fresh one per case would
    // run into the user's `key_pairs` quota).
    let keypair = "kp-carol".to_string();
    let r = s
        .post(
            "/v2.1/os-keypairs",
            "carol:p1",
            None,
            json!({"keypair": {"name": keypair, "public_key": PUB}}),
        )
        .await;
    assert!(
        r.status == StatusCode::OK || r.status == StatusCode::CONFLICT,
        "{:?}",
        r.body
    );
    // One group per project, reused (a case may have deleted it): the fixtures stay
    // under the server_groups quota.
    let listed = s.get("/v2.1/os-server-groups", token, None).await;
    let group = match listed.body["server_groups"][0]["id"].as_str() {
        Some(id) => id.to_string(),
        None => {
            let r = s
                .post(
                    "/v2.1/os-server-groups",
                    token,
                    None,
                    json!({"server_group": {"name": "g", "policies": ["affinity"]}}),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            r.body["server_group"]["id"].as_str().unwrap().to_string()
        }
    };
    let r = s
        .post(
            "/v1/subscriptions",
            common::ADMIN,
            None,
            json!({"url": "http://127.0.0.1:9/hook", "event_types": ["instance"], "secret": "s"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let subscription = r.body["subscription"]["id"].as_str().unwrap().to_string();
    let private_flavor = Uuid::new_v4().to_string();
    let r = s
        .post(
            "/v2.1/flavors",
            common::ADMIN,
            None,
            json!({"flavor": {"id": private_flavor, "name": format!("pr-{private_flavor}"),
                "ram": 64, "vcpus": 1, "disk": 0, "os-flavor-access:is_public": false}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s
        .post(
            &format!("/v2.1/flavors/{private_flavor}/action"),
            common::ADMIN,
            None,
            json!({"addTenantAccess": {"tenant": "p9"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    Fixture {
        private_flavor,
        subscription,
        server,
        flavor,
        group,
        hypervisor,
        keypair,
        project,
        aggregate,
        create_request,
    }
}

/// The request exercising `row` on the fixture: (method, path, body).
fn request(row: &Endpoint, f: &Fixture) -> (Method, String, Option<Value>) {
    let id =
        if row.path == api::policy::FLAVOR_ACTION_PATH || row.path.ends_with("/os-flavor-access") {
            &f.private_flavor
        } else if row.path.starts_with("/v2.1/flavors") {
            &f.flavor
        } else if row.path.starts_with("/v2.1/os-quota-sets")
            || row.path.starts_with("/v2.1/os-simple-tenant-usage")
        {
            f.project
        } else if row.path.starts_with("/v2.1/os-quota-class-sets") {
            "default"
        } else if row.path.starts_with("/v2.1/os-aggregates") {
            &f.aggregate
        } else if row.path.starts_with("/v2.1/os-keypairs") {
            &f.keypair
        } else if row.path.starts_with("/v2.1/os-server-groups") {
            &f.group
        } else if row.path.starts_with("/v2.1/os-hosts") {
            "host1"
        } else if row.path.ends_with("/uptime") {
            &f.hypervisor
        } else if row.path.starts_with("/v2.1/os-hypervisors/{id}/") {
            "host"
        } else if row.path.starts_with("/v1/subscriptions") {
            &f.subscription
        } else if row.path.starts_with("/v2.1/images/") {
            // No such image: the proxy's 404 after the (empty) policy check.
            "x"
        } else if row.path.starts_with("/v2.1/os-") {
            // Not a UUID: a 400 after the policy check, so nothing is changed.
            "x"
        } else {
            &f.server
        };
    let mut path = row
        .path
        .replace("{id}", id)
        .replace("{key}", "k")
        .replace("{alias}", "os-keypairs")
        .replace("{tag}", "t")
        .replace("{network}", "private")
        .replace("{request_id}", &f.create_request)
        .replace("{mid}", "1")
        .replace("{port_id}", "3f0d8e5a-0000-4000-8000-000000000001")
        .replace("{token}", "x");
    match row.path {
        // (bounded: the live stream would never end)
        "/v1/events/stream" => path.push_str("?timeout=1"),
        "/v1/instances/{id}/state" => path.push_str("?at=2100-01-01T00:00:00Z"),
        // An endless stream otherwise.
        "/v1/notifications/stream" => path.push_str("?follow=false"),
        // A project manager lists its own project's (other projects': CONDITIONAL).
        "/v2.1/os-migrations" => path.push_str("?project_id=p1"),
        _ => {}
    }
    let body = match (row.method, row.path, row.action) {
        ("POST", api::policy::AGGREGATE_ACTION_PATH, Some(action)) => Some(match action {
            "add_host" => json!({"add_host": {"host": "host1"}}),
            "remove_host" => json!({"remove_host": {"host": "host1"}}),
            "set_metadata" => json!({"set_metadata": {"metadata": {"k": "v"}}}),
            other => panic!("no sample request for aggregate action {other}"),
        }),
        ("POST", api::policy::FLAVOR_ACTION_PATH, Some(action)) => Some(match action {
            "addTenantAccess" => json!({"addTenantAccess": {"tenant": "p1"}}),
            "removeTenantAccess" => json!({"removeTenantAccess": {"tenant": "p9"}}),
            other => panic!("no sample request for flavor action {other}"),
        }),
        // The action's declared example (resize's names flavor "2", made by the test).
        (_, _, Some(action)) => Some(
            api::actions::find(action)
                .expect("action rows come from declarations")
                .example_body(),
        ),
        ("GET" | "DELETE", _, None) => None,
        ("POST", "/v2.1/servers", None) => Some(json!({"server": {
            "name": "new", "imageRef": IMAGE, "flavorRef": "f1", "networks": "none"}})),
        ("PUT", "/v2.1/servers/{id}", None) => Some(json!({"server": {"name": "renamed"}})),
        ("POST", "/v2.1/flavors", None) => Some(json!({"flavor": {
            "name": format!("n-{}", Uuid::new_v4()), "ram": 256, "vcpus": 1, "disk": 1}})),
        ("PUT", "/v2.1/flavors/{id}", None) => Some(json!({"flavor": {"description": "d"}})),
        ("POST", "/v2.1/flavors/{id}/os-extra_specs", None) => {
            Some(json!({"extra_specs": {"a": "b"}}))
        }
        ("PUT", "/v2.1/flavors/{id}/os-extra_specs/{key}", None) => Some(json!({"k": "v2"})),
        ("POST", "/v2.1/os-server-groups", None) => Some(json!({"server_group": {
            "name": "new", "policies": ["anti-affinity"]}})),
        ("POST", "/v2.1/os-keypairs", None) => Some(json!({"keypair": {
            "name": format!("kp-{}", Uuid::new_v4()), "public_key": PUB}})),
        ("PUT", "/v2.1/os-services/{id}", None) => Some(json!({"status": "disabled"})),
        ("PUT", "/v2.1/os-hosts/{id}", None) => Some(json!({"status": "enable"})),
        ("PUT", "/v2.1/os-quota-sets/{id}", None) => {
            Some(json!({"quota_set": {"instances": 1000}}))
        }
        ("PUT", "/v2.1/os-quota-class-sets/{id}", None) => {
            Some(json!({"quota_class_set": {"key_pairs": 100}}))
        }
        ("POST", "/v2.1/os-aggregates", None) => Some(json!({"aggregate": {
            "name": format!("a-{}", Uuid::new_v4()), "availability_zone": "nova"}})),
        ("PUT", "/v2.1/os-aggregates/{id}", None) => Some(json!({"aggregate": {
            "name": format!("r-{}", Uuid::new_v4())}})),
        ("POST" | "PUT", "/v2.1/servers/{id}/metadata", None) => {
            Some(json!({"metadata": {"k": "v"}}))
        }
        ("PUT", "/v2.1/servers/{id}/metadata/{key}", None) => Some(json!({"meta": {"k": "v2"}})),
        ("PUT", "/v2.1/servers/{id}/tags", None) => Some(json!({"tags": ["t"]})),
        ("PUT", "/v2.1/servers/{id}/tags/{tag}", None) => None,
        ("POST" | "PUT", "/v2.1/images/{id}/metadata", None) => {
            Some(json!({"metadata": {"k": "v"}}))
        }
        ("PUT", "/v2.1/images/{id}/metadata/{key}", None) => Some(json!({"meta": {"k": "v2"}})),
        ("POST", "/v1/subscriptions", None) => Some(json!({
            "url": "http://127.0.0.1:9/hook", "event_types": ["instance"], "secret": "s"})),
        ("POST", "/v2.1/os-server-external-events", None) => Some(json!({"events": [
            {"name": "network-changed", "server_uuid": f.server}]})),
        ("POST", "/v2.1/servers/{id}/remote-consoles", None) => {
            Some(json!({"remote_console": {"protocol": "vnc", "type": "novnc"}}))
        }
        // Both a network and a port: the attach's 400 after the policy check.
        ("POST", "/v2.1/servers/{id}/os-interface", None) => Some(json!({
            "interfaceAttachment": {"net_id": "3f0d8e5a-0000-4000-8000-000000000002",
                "port_id": "3f0d8e5a-0000-4000-8000-000000000003"}})),
        ("POST", "/v2.1/servers/{id}/migrations/{mid}/action", None) => {
            Some(json!({"force_complete": null}))
        }
        // An unknown pool: the create's 404 after the policy check.
        ("POST", "/v2.1/os-floating-ips", None) => Some(json!({"pool": "nope"})),
        ("POST", "/v2.1/os-security-groups", None) => Some(json!({"security_group": {
            "name": format!("sg-{}", Uuid::new_v4()), "description": ""}})),
        ("PUT", "/v2.1/os-security-groups/{id}", None) => {
            Some(json!({"security_group": {"name": "n", "description": "d"}}))
        }
        // Not a uuid: the schema's 400 after the policy check.
        ("POST", "/v2.1/os-security-group-rules", None) => {
            Some(json!({"security_group_rule": {"parent_group_id": "x"}}))
        }
        (m, p, None) => panic!("no sample request for {m} {p}: add one to tests/policy.rs"),
    };
    let method = Method::from_bytes(row.method.as_bytes()).unwrap();
    (method, path, body)
}

/// What the rule says: Ok(()) when allowed, else the expected refusal.
fn expected(
    rule: Rule,
    name: &str,
    target: Target,
    role: Role,
    owner: Owner,
) -> Result<(), (StatusCode, Option<String>)> {
    if matches!(target, Target::Server | Target::ServerGroup)
        && owner == Owner::Other
        && role != Role::Admin
    {
        return Err((StatusCode::NOT_FOUND, None));
    }
    // Project-scoped rules: another project is the policy's refusal.
    if target == Target::Project && owner == Owner::Other && role != Role::Admin {
        return Err((
            StatusCode::FORBIDDEN,
            Some(format!("Policy doesn't allow {name} to be performed.")),
        ));
    }
    if !rule.allows(Some(role)) {
        return Err((
            StatusCode::FORBIDDEN,
            Some(format!("Policy doesn't allow {name} to be performed.")),
        ));
    }
    Ok(())
}

/// The microversion a path is exercised at: [`VERSION`], or the last one where the
/// route exists (os-hosts until 2.42; hypervisor search / servers until 2.52, statistics
/// and uptime until 2.87, tested at 2.52 with an integer id).
fn version_for(path: &str, body: Option<&Value>) -> &'static str {
    // The console actions are 2.1-2.5 methods.
    let old_console = body.and_then(Value::as_object).is_some_and(|o| {
        o.keys()
            .any(|k| k.starts_with("os-get") && k.ends_with("Console"))
    });
    if old_console {
        return "2.5";
    }
    // The floating IP actions are 2.1-2.43 methods.
    let floating_action = body
        .and_then(Value::as_object)
        .is_some_and(|o| o.keys().any(|k| k.ends_with("FloatingIp")));
    if floating_action {
        return "2.43";
    }
    let old_hypervisor = ["/uptime", "/search", "/servers", "/statistics"]
        .iter()
        .any(|s| path.ends_with(s));
    if path.starts_with("/v2.1/os-hosts") {
        "2.42"
    } else if [
        "/v2.1/os-networks",
        "/v2.1/images",
        "/v2.1/os-tenant-networks",
        "/v2.1/os-floating-ip",
        "/v2.1/os-security-group",
    ]
    .iter()
    .any(|p| path.starts_with(p))
    {
        // Nova's network and image proxies end at 2.35.
        "2.35"
    } else if path.starts_with("/v2.1/os-hypervisors") && old_hypervisor {
        "2.52"
    } else {
        VERSION
    }
}

fn token(role: Role) -> String {
    format!("carol:p1:{}", role.name())
}

async fn check(
    s: &Stack,
    what: &str,
    role: Role,
    owner: Owner,
    req: (Method, String, Option<Value>),
    want: Result<(), (StatusCode, Option<String>)>,
) {
    let (method, path, body) = req;
    let token = token(role);
    let before = s.positions().await;
    let is_get = method == Method::GET;
    let r = s
        .call(
            method,
            &path,
            Some(&token),
            Some(version_for(&path, body.as_ref())),
            body,
        )
        .await;
    let after = s.positions().await;
    let case = format!(
        "{what} as {} ({owner:?} project): {} {:?}",
        role.name(),
        r.status,
        r.body
    );
    match want {
        Ok(()) => {
            // 501: os-hosts actions the libvirt driver does not implement (Nova's answer).
            // A server is on no network here, so `ips/{network}` answers Nova's "not a
            // member" 404 once the policy allows it.
            // Likewise the fixture has no console token, no migration and no port to
            // show.
            let msg = r.body["itemNotFound"]["message"]
                .as_str()
                .unwrap_or_default();
            let not_a_member = msg == "Instance is not a member of specified network"
                || msg == "Token not found"
                || msg == "Network not found"
                || msg.ends_with("could not be found as device id on any ports")
                || msg.starts_with("In-progress live migration 1 is not found")
                || msg == "Image not found."
                // No port: the interface show and detach 404s.
                || (msg.starts_with("Port id ") && msg.ends_with("could not be found."))
                || msg.ends_with("is not attached")
                // No floating IP or pool in the fixture.
                || msg.starts_with("Floating IP not found for")
                || msg == "Floating IP pool not found."
                || msg == "floating IP not found";
            assert!(
                r.status.is_success()
                    || not_a_member
                    || r.status == StatusCode::NOT_IMPLEMENTED
                    || (r.status.is_client_error()
                        && r.status != StatusCode::FORBIDDEN
                        && r.status != StatusCode::NOT_FOUND),
                "allowed, got {case}"
            );
            // (Neutron's group listing creates the project's `default` group.)
            if is_get && path != "/v2.1/os-security-groups" {
                assert_eq!(before, after, "a GET appended: {case}");
            }
        }
        Err((status, message)) => {
            assert_eq!(r.status, status, "{case}");
            if let Some(m) = message {
                assert_eq!(
                    r.body,
                    json!({"forbidden": {"code": 403, "message": m}}),
                    "{case}"
                );
            }
            assert_eq!(before, after, "refused call appended: {case}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_every_role_own_and_other_project() {
    let s = common::start().await;
    let host = s.register_host("host1").await;
    s.flavor("f1", "m1.tiny", 512, 1).await;
    s.flavor("2", "m1.small", 1024, 2).await;
    let mut cases = 0;
    for row in ENDPOINTS.iter() {
        for role in Role::ALL {
            for owner in [Owner::Own, Owner::Other] {
                let f = fixture(&s, &host, owner).await;
                let what = format!(
                    "{} {}{}",
                    row.method,
                    row.path,
                    row.action.map(|a| format!(" ({a})")).unwrap_or_default()
                );
                let want = expected(row.rule, row.name, row.target, role, owner);
                check(&s, &what, role, owner, request(row, &f), want).await;
                cases += 1;
            }
        }
    }
    assert_eq!(cases, ENDPOINTS.len() * Role::ALL.len() * 2);
}

/// The request exercising a content-dependent rule (`server`: a server of p1).
fn conditional_request(
    method: &str,
    path: &str,
    when: &str,
    server: &str,
) -> (Method, String, Option<Value>) {
    match (method, path) {
        ("GET", "/v2.1/os-migrations") => (Method::GET, path.to_string(), None),
        ("POST", "/v2.1/servers/{id}/action") if when.starts_with("`migrate`") => (
            Method::POST,
            path.replace("{id}", server),
            Some(json!({"migrate": {"host": "host1"}})),
        ),
        ("POST", "/v2.1/servers/{id}/action") if when.starts_with("`os-migrateLive`") => (
            Method::POST,
            path.replace("{id}", server),
            Some(json!({"os-migrateLive": {"host": "host1", "block_migration": "auto"}})),
        ),
        ("GET", p) if when.contains("all_tenants") => {
            (Method::GET, format!("{p}?all_tenants=1"), None)
        }
        ("POST", "/v2.1/servers") if when.contains("2.74") => (
            Method::POST,
            path.to_string(),
            Some(
                json!({"server": {"name": "dest", "imageRef": IMAGE, "flavorRef": "f1",
                "networks": "none", "host": "host1"}}),
            ),
        ),
        ("GET", "/v2.1/limits") if when.contains("tenant_id") => {
            (Method::GET, format!("{path}?tenant_id=p2"), None)
        }
        ("POST", "/v2.1/servers") if when.contains("az:host") => (
            Method::POST,
            path.to_string(),
            Some(
                json!({"server": {"name": "forced", "imageRef": IMAGE, "flavorRef": "f1",
                "networks": "none", "availability_zone": "nova:host1"}}),
            ),
        ),
        // Another user's key pairs (2.10+): Bob's `bob-key`, made by the test.
        ("GET", "/v2.1/os-keypairs") => (Method::GET, format!("{path}?user_id=bob"), None),
        ("POST", "/v2.1/os-keypairs") => (
            Method::POST,
            path.to_string(),
            Some(json!({"keypair": {"name": format!("kp-{}", Uuid::new_v4()),
                "public_key": PUB, "user_id": "bob"}})),
        ),
        (m, "/v2.1/os-keypairs/{id}") => (
            Method::from_bytes(m.as_bytes()).unwrap(),
            "/v2.1/os-keypairs/bob-key?user_id=bob".to_string(),
            None,
        ),
        _ => panic!("no sample request for {method} {path} when {when}: add one"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_dependent_rules_every_role() {
    let s = common::start().await;
    s.register_host("host1").await;
    s.flavor("f1", "m1.tiny", 512, 1).await;
    let r = s
        .post(
            "/v2.1/os-keypairs",
            common::BOB,
            None,
            json!({"keypair": {"name": "bob-key", "public_key": PUB}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let server = s.server("alice:p1", "srv", "f1").await;
    for c in CONDITIONAL {
        let row = ENDPOINTS
            .iter()
            .find(|e| e.method == c.method && e.path == c.path && e.action == c.action)
            .expect("a conditional rule refines a row");
        for role in Role::ALL {
            // The endpoint's own rule comes first, then the content-dependent one.
            let want = expected(row.rule, row.name, row.target, role, Owner::Own)
                .and_then(|()| expected(c.rule, c.name, Target::None, role, Owner::Own));
            let what = format!("{} {} with {}", c.method, c.path, c.when);
            check(
                &s,
                &what,
                role,
                Owner::Own,
                conditional_request(c.method, c.path, c.when, &server),
                want,
            )
            .await;
        }
    }
}

/// Without a role part, noauth tokens keep their meaning: `user:project` is member,
/// `admin:project` is admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_part_noauth_tokens_keep_their_roles() {
    let s = common::start().await;
    s.flavor("f1", "m1.tiny", 512, 1).await;
    let id = s.server(common::ALICE, "a", "f1").await;
    let r = s
        .call(
            Method::PUT,
            &format!("/v2.1/servers/{id}"),
            Some(common::ALICE),
            None,
            Some(json!({"server": {"name": "b"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = s
        .get("/v2.1/servers?all_tenants=1", common::ALICE, None)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    let r = s
        .get("/v2.1/servers?all_tenants=1", common::ADMIN, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["servers"].as_array().unwrap().len(), 1);
}
