//! Response shapes per microversion against Nova's api samples (issue 4, item 5): for
//! every sample directory (2.1 and each `v2.N` up to 2.100) the matching request is made
//! at that microversion and the response's keys, recursively, must be exactly the
//! sample's — fields appear and disappear at their versions, no extra fields. Values
//! differ (ids, times, hosts); maps whose keys are data (metadata, addresses, extra
//! specs, image properties, scheduler hints, attached volumes) are compared as one key.
//! Samples with host attributes were taken as admin, the others as a project member, and
//! the response is requested the same way.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const IMAGE: &str = "70a599e0-31e7-49b7-b260-868f441e862b";
/// A member of ADMIN's project (same tenant, no admin role).
const MEMBER: &str = "admin:adminproj:member";

/// Keys whose values are maps of data, not of fields.
const OPAQUE: &[&str] = &[
    "addresses",
    "metadata",
    "extra_specs",
    "properties",
    "scheduler_hints",
    "os-extended-volumes:volumes_attached",
];

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nova-samples")
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every key path of `v` (`/server/flavor/ram`); lists by their first item.
fn keys(v: &Value, path: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{path}/{k}");
                // The paging link is there only when a page is full.
                if p == "/servers_links" || p == "/flavors_links" {
                    continue;
                }
                out.insert(p.clone());
                if !OPAQUE.contains(&k.as_str()) {
                    keys(x, &p, out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(first) = a.first() {
                keys(first, &format!("{path}[]"), out);
            }
        }
        _ => {}
    }
}

fn key_set(v: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    keys(v, "", &mut out);
    out
}

/// Whether Nova took the sample as admin (it shows admin-only attributes).
fn admin_sample(sample: &Value) -> bool {
    key_set(sample)
        .iter()
        .any(|k| k.ends_with("/OS-EXT-SRV-ATTR:host") || k.ends_with("/host_status"))
}

/// Lists keep their first item only (the samples have one or two of the same shape).
fn first_only(mut v: Value, key: &str) -> Value {
    if let Some(a) = v[key].as_array_mut() {
        a.truncate(1);
    }
    v
}

fn compare(what: &str, version: &str, ours: &Value, sample: &Value, failures: &mut Vec<String>) {
    let (a, b) = (key_set(ours), key_set(sample));
    if a != b {
        failures.push(format!(
            "{what} @ {version}:\n    only ours:   {:?}\n    only Nova's: {:?}",
            a.difference(&b).collect::<Vec<_>>(),
            b.difference(&a).collect::<Vec<_>>()
        ));
    }
}

/// The sample directories of `api`: ("2.1", dir) and ("2.N", dir/v2.N), by version.
fn versions(api: &str) -> Vec<(String, PathBuf)> {
    let root = samples().join(api);
    let mut out = vec![("2.1".to_string(), root.clone())];
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().ok()?;
            let minor = name.strip_prefix("v2.")?.parse().ok()?;
            Some((minor, e.path()))
        })
        .collect();
    dirs.sort();
    out.extend(dirs.into_iter().map(|(m, p)| (format!("2.{m}"), p)));
    out
}

fn minor(version: &str) -> u32 {
    version.split('.').nth(1).unwrap().parse().unwrap()
}

/// The sample's create request made bootable here: our flavor and image, no keypair,
/// networks, volumes or hints that only Nova's test fixtures have.
fn create_body(version: &str, dir: &Path) -> Value {
    let path = dir.join("server-create-req.json");
    let mut body = if path.exists() {
        load(&path)
    } else {
        json!({"server": {"name": "new-server-test"}})
    };
    let obj = body.as_object_mut().unwrap();
    obj.remove("OS-SCH-HNT:scheduler_hints");
    obj.remove("os:scheduler_hints");
    let s = body["server"].as_object_mut().unwrap();
    s.insert("flavorRef".into(), json!("1"));
    s.insert("imageRef".into(), json!(IMAGE));
    for k in [
        "key_name",
        "host",
        "hypervisor_hostname",
        "availability_zone",
        "security_groups",
        "block_device_mapping_v2",
        "user_data",
        "trusted_image_certificates",
    ] {
        s.remove(k);
    }
    if minor(version) >= 57 {
        s.remove("personality");
    }
    if minor(version) >= 37 {
        s.insert("networks".into(), json!("none"));
    } else {
        s.remove("networks");
    }
    body
}

fn exists(dir: &Path, file: &str) -> Option<Value> {
    let p = dir.join(file);
    p.exists().then(|| load(&p))
}

#[tokio::test]
async fn server_responses_have_exactly_the_samples_fields() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    let host = s.register_host("compute-1").await;
    let mut failures = Vec::new();
    let mut compared = 0;
    let mut rebuilds = 0;
    for (version, dir) in versions("servers") {
        let v = Some(version.as_str());
        let create = s
            .post("/v2.1/servers", ADMIN, v, create_body(&version, &dir))
            .await;
        assert_eq!(
            create.status,
            StatusCode::ACCEPTED,
            "create @ {version}: {:?}",
            create.body
        );
        let id = create.body["server"]["id"].as_str().unwrap().to_string();
        s.make_active(&id, &host).await;
        if let Some(sample) = exists(&dir, "server-create-resp.json") {
            compare(
                "server-create-resp",
                &version,
                &create.body,
                &sample,
                &mut failures,
            );
            compared += 1;
        }
        let token = |sample: &Value| if admin_sample(sample) { ADMIN } else { MEMBER };
        if let Some(sample) = exists(&dir, "server-get-resp.json") {
            let r = s
                .get(&format!("/v2.1/servers/{id}"), token(&sample), v)
                .await;
            assert_eq!(r.body["server"]["status"], "ACTIVE");
            compare("server-get-resp", &version, &r.body, &sample, &mut failures);
            compared += 1;
        }
        if let Some(sample) = exists(&dir, "servers-details-resp.json") {
            let r = s.get("/v2.1/servers/detail", token(&sample), v).await;
            let ours = first_only(r.body, "servers");
            compare(
                "servers-details-resp",
                &version,
                &ours,
                &first_only(sample, "servers"),
                &mut failures,
            );
            compared += 1;
        }
        if let Some(sample) = exists(&dir, "servers-list-resp.json") {
            let r = s.get("/v2.1/servers", ADMIN, v).await;
            let ours = first_only(r.body, "servers");
            compare(
                "servers-list-resp",
                &version,
                &ours,
                &first_only(sample, "servers"),
                &mut failures,
            );
            compared += 1;
        }
        for (req, resp) in [
            ("server-update-req.json", "server-update-resp.json"),
            ("server-put-req.json", "server-put-resp.json"),
        ] {
            if let (Some(body), Some(sample)) = (exists(&dir, req), exists(&dir, resp)) {
                let r = s
                    .call(
                        Method::PUT,
                        &format!("/v2.1/servers/{id}"),
                        Some(token(&sample)),
                        v,
                        Some(body),
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{resp} @ {version}: {:?}", r.body);
                compare(
                    resp.trim_end_matches(".json"),
                    &version,
                    &r.body,
                    &sample,
                    &mut failures,
                );
                compared += 1;
            }
        }
        if let (Some(mut body), Some(sample)) = (
            exists(&dir, "server-action-rebuild.json"),
            exists(&dir, "server-action-rebuild-resp.json"),
        ) {
            body["rebuild"]["imageRef"] = json!(IMAGE);
            let r = s
                .post(
                    &format!("/v2.1/servers/{id}/action"),
                    token(&sample),
                    v,
                    body,
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::ACCEPTED,
                "rebuild @ {version}: {:?}",
                r.body
            );
            assert_eq!(r.body["server"]["status"], "REBUILD", "@ {version}");
            compare(
                "server-action-rebuild-resp",
                &version,
                &r.body,
                &sample,
                &mut failures,
            );
            rebuilds += 1;
        }
    }
    assert!(compared >= 50, "only {compared} samples compared");
    assert!(rebuilds >= 14, "only {rebuilds} rebuild samples compared");
    assert!(
        failures.is_empty(),
        "responses differ from Nova's samples:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn flavor_responses_have_exactly_the_samples_fields() {
    let s = start().await;
    s.flavor("1", "m1.tiny", 512, 1).await;
    let mut failures = Vec::new();
    let mut compared = 0;
    for (version, dir) in versions("flavors") {
        let v = Some(version.as_str());
        let r = s.get("/v2.1/flavors/1", ADMIN, v).await;
        compare(
            "flavor-get-resp",
            &version,
            &r.body,
            &load(&dir.join("flavor-get-resp.json")),
            &mut failures,
        );
        for (path, file) in [
            ("/v2.1/flavors/detail", "flavors-detail-resp.json"),
            ("/v2.1/flavors", "flavors-list-resp.json"),
        ] {
            let r = s.get(path, ADMIN, v).await;
            let sample = first_only(load(&dir.join(file)), "flavors");
            compare(
                file.trim_end_matches(".json"),
                &version,
                &first_only(r.body, "flavors"),
                &sample,
                &mut failures,
            );
        }
        compared += 3;
    }
    for (version, dir) in versions("flavor-manage") {
        let v = Some(version.as_str());
        let mut body = load(&dir.join("flavor-create-post-req.json"));
        let fid = format!("sample-{version}");
        body["flavor"]["id"] = json!(fid);
        body["flavor"]["name"] = json!(fid);
        let r = s.post("/v2.1/flavors", ADMIN, v, body).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "flavor create @ {version}: {:?}",
            r.body
        );
        compare(
            "flavor-create-post-resp",
            &version,
            &r.body,
            &load(&dir.join("flavor-create-post-resp.json")),
            &mut failures,
        );
        compared += 1;
        if let (Some(req), Some(sample)) = (
            exists(&dir, "flavor-update-req.json"),
            exists(&dir, "flavor-update-resp.json"),
        ) {
            let r = s
                .call(
                    Method::PUT,
                    &format!("/v2.1/flavors/{fid}"),
                    Some(ADMIN),
                    v,
                    Some(req),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "flavor update @ {version}: {:?}",
                r.body
            );
            compare(
                "flavor-update-resp",
                &version,
                &r.body,
                &sample,
                &mut failures,
            );
            compared += 1;
        }
    }
    assert!(compared >= 15, "only {compared} samples compared");
    assert!(
        failures.is_empty(),
        "responses differ from Nova's samples:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn server_group_responses_have_exactly_the_samples_fields() {
    let s = start().await;
    let mut failures = Vec::new();
    let mut compared = 0;
    for (version, dir) in versions("os-server-groups") {
        let v = Some(version.as_str());
        let r = s
            .post(
                "/v2.1/os-server-groups",
                MEMBER,
                v,
                load(&dir.join("server-groups-post-req.json")),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "create @ {version}: {:?}", r.body);
        compare(
            "server-groups-post-resp",
            &version,
            &r.body,
            &load(&dir.join("server-groups-post-resp.json")),
            &mut failures,
        );
        let id = r.body["server_group"]["id"].as_str().unwrap().to_string();
        let r = s
            .get(&format!("/v2.1/os-server-groups/{id}"), MEMBER, v)
            .await;
        compare(
            "server-groups-get-resp",
            &version,
            &r.body,
            &load(&dir.join("server-groups-get-resp.json")),
            &mut failures,
        );
        // The list's first item is the group just made (created last: list the page
        // that starts with it).
        let n = s.get("/v2.1/os-server-groups", MEMBER, v).await.body["server_groups"]
            .as_array()
            .unwrap()
            .len();
        let r = s
            .get(
                &format!("/v2.1/os-server-groups?offset={}", n - 1),
                MEMBER,
                v,
            )
            .await;
        compare(
            "server-groups-list-resp",
            &version,
            &first_only(r.body, "server_groups"),
            &first_only(
                load(&dir.join("server-groups-list-resp.json")),
                "server_groups",
            ),
            &mut failures,
        );
        compared += 3;
    }
    assert!(compared >= 9, "{compared}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
