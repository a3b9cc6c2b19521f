//! The committed OpenAPI documents (docs/openapi/*.json) against the code (issue 4,
//! item 7): every routed (method, path) is documented and every documented operation is
//! routed, the compute document lists exactly the server actions of the policy table and
//! the supported microversion range, public operations are exactly the unauthenticated
//! ones, and each document is internally sound (unique operation ids, declared path
//! parameters, resolvable `$ref`s). `ops/openapi/run.sh` (schemathesis, in the test
//! command) checks the other half: that responses match the documented schemas.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

fn doc(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/openapi")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} cannot be read: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// `(METHOD, path)` of every operation of a document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(*m).is_some() {
                out.insert((m.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn pairs<'a>(routes: impl IntoIterator<Item = (String, &'a str)>) -> BTreeSet<(String, String)> {
    routes
        .into_iter()
        .map(|(m, p)| (m, p.to_string()))
        .collect()
}

/// Fails with both differences when the document and the router disagree.
fn assert_same_routes(
    name: &str,
    documented: &BTreeSet<(String, String)>,
    routed: &BTreeSet<(String, String)>,
) {
    let undocumented: Vec<_> = routed.difference(documented).collect();
    let unrouted: Vec<_> = documented.difference(routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "docs/openapi/{name}.json drifted from the router:\n  routed but not documented: {undocumented:?}\n  documented but not routed: {unrouted:?}"
    );
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

/// Every `$ref` resolves, operation ids are unique, path parameters are declared, every
/// operation documents its responses.
fn assert_sound(name: &str, doc: &Value) {
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{name}: not an OpenAPI 3 document"
    );
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    if k == "$ref" {
                        out.push(x.as_str().expect("$ref is a string"));
                    } else {
                        refs(x, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(doc, &mut all);
    for r in all {
        assert!(
            resolve(doc, r).is_some(),
            "{name}: $ref {r} does not resolve"
        );
    }
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let placeholders: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_string)
            .collect();
        for m in METHODS {
            let Some(op) = item.get(*m) else { continue };
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: {m} {path} has no operationId"));
            assert!(ids.insert(id.to_string()), "{name}: operationId {id} twice");
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{name}: {m} {path} documents no response"
            );
            let params = item["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(op["parameters"].as_array().into_iter().flatten());
            let declared: BTreeSet<String> = params
                .map(|p| match p.get("$ref").and_then(Value::as_str) {
                    Some(r) => resolve(doc, r).expect("resolved above"),
                    None => p,
                })
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().expect("parameter name").to_string())
                .collect();
            assert_eq!(
                declared, placeholders,
                "{name}: {m} {path}: path parameters declared vs in the template"
            );
        }
    }
}

fn compute_routes() -> BTreeSet<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let log: Arc<dyn eventlog::EventLog> =
        eventlog::EmbeddedLog::open(&dir.path().join("log")).unwrap();
    let checkpoints =
        Arc::new(eventlog::EmbeddedCheckpoints::open(&dir.path().join("c.redb")).unwrap());
    let engine = Arc::new(engine::Engine::new(
        log,
        Arc::new(projections::World::default()),
        checkpoints,
        Default::default(),
        std::time::Duration::from_secs(1),
    ));
    let state = api::ApiState {
        engine,
        auth: api::AuthMode::NoAuth,
    };
    pairs(
        api::routes(state)
            .registered()
            .iter()
            .map(|(m, p)| (m.to_string(), *p)),
    )
}

#[tokio::test]
async fn compute_document_matches_the_router() {
    let d = doc("compute");
    assert_sound("compute", &d);
    assert_same_routes("compute", &operations(&d), &compute_routes());
}

#[test]
fn compute_document_lists_every_server_action() {
    let d = doc("compute");
    let body = &d["paths"]["/v2.1/servers/{id}/action"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    let documented: BTreeSet<String> = body["anyOf"]
        .as_array()
        .expect("the action body is an anyOf of one-key objects")
        .iter()
        .map(|alt| {
            let keys: Vec<&String> = alt["properties"]
                .as_object()
                .expect("properties")
                .keys()
                .collect();
            assert_eq!(keys.len(), 1, "an action alternative has one key: {alt}");
            keys[0].clone()
        })
        .collect();
    let declared: BTreeSet<String> = api::actions::ACTIONS
        .iter()
        .map(|a| a.name.to_string())
        .collect();
    assert_eq!(
        documented, declared,
        "documented actions vs api::actions::ACTIONS"
    );
    let policy: BTreeSet<String> = api::policy::ENDPOINTS
        .iter()
        .filter(|e| e.path == api::policy::ACTION_PATH)
        .filter_map(|e| e.action.map(str::to_string))
        .collect();
    assert_eq!(documented, policy, "documented actions vs the policy table");
}

/// The action route documents exactly the success statuses the declarations answer
/// with (202, 204 for confirmResize, ...), and each declared example body matches its
/// documented alternative's keys.
#[test]
fn compute_document_states_every_action_reply_and_example() {
    let d = doc("compute");
    let op = &d["paths"]["/v2.1/servers/{id}/action"]["post"];
    let documented: BTreeSet<u16> = op["responses"]
        .as_object()
        .expect("responses")
        .keys()
        .filter_map(|k| k.parse::<u16>().ok())
        .filter(|s| (200..300).contains(s))
        .collect();
    let declared: BTreeSet<u16> = api::actions::ACTIONS
        .iter()
        .map(|a| a.reply.status().as_u16())
        .collect();
    assert_eq!(
        documented, declared,
        "documented vs declared success statuses"
    );
    let alternatives = op["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
        .as_array()
        .expect("anyOf");
    for a in api::actions::ACTIONS {
        let alt = alternatives
            .iter()
            .find(|alt| alt["properties"].get(a.name).is_some())
            .expect("documented above");
        let schema = &alt["properties"][a.name];
        let Some(props) = schema["properties"].as_object() else {
            continue;
        };
        let example = a.example_body();
        if let Some(arg) = example[a.name].as_object() {
            for key in arg.keys() {
                assert!(
                    props.contains_key(key),
                    "{}: the example's key {key} is not documented",
                    a.name
                );
            }
        }
        for key in schema["required"].as_array().into_iter().flatten() {
            let key = key.as_str().expect("required keys are strings");
            assert!(
                example[a.name].get(key).is_some(),
                "{}: the example lacks required key {key}",
                a.name
            );
        }
    }
}

#[test]
fn compute_document_states_the_microversion_range() {
    let d = doc("compute");
    let range = format!("{}-{}", api::Version::MIN, api::Version::MAX);
    assert!(
        d["info"]["version"]
            .as_str()
            .is_some_and(|v| v.contains(&range)),
        "info.version must name the microversions {range}"
    );
    let pattern = d["components"]["parameters"]["ApiVersion"]["schema"]["pattern"]
        .as_str()
        .expect("ApiVersion pattern");
    let max_minor = api::Version::MAX.to_string();
    let max_minor = max_minor.split('.').nth(1).unwrap();
    assert!(
        pattern.contains(&format!("|{max_minor})")),
        "the ApiVersion pattern must end at 2.{max_minor}: {pattern}"
    );
}

#[test]
fn compute_public_operations_are_the_unauthenticated_ones() {
    let d = doc("compute");
    let documented_public: BTreeSet<(String, String)> = operations(&d)
        .into_iter()
        .filter(|(m, p)| {
            d["paths"][p][m.to_ascii_lowercase()]["security"]
                .as_array()
                .is_some_and(|s| s.is_empty())
        })
        .collect();
    let policy_public = pairs(
        api::policy::ENDPOINTS
            .iter()
            .filter(|e| e.rule == api::policy::Rule::Public)
            .map(|e| (e.method.to_string(), e.path)),
    );
    assert_eq!(documented_public, policy_public);
}

#[test]
fn identity_document_matches_the_router() {
    let d = doc("identity");
    assert_sound("identity", &d);
    let routed = pairs(
        identity::route_table()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p)),
    );
    assert_same_routes("identity", &operations(&d), &routed);
}

#[test]
fn image_document_matches_the_router() {
    let d = doc("image");
    assert_sound("image", &d);
    let routed = pairs(
        image::route_table()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p)),
    );
    assert_same_routes("image", &operations(&d), &routed);
}

#[test]
fn network_document_matches_the_router() {
    let d = doc("network");
    assert_sound("network", &d);
    let routed = pairs(
        network::route_table()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p)),
    );
    assert_same_routes("network", &operations(&d), &routed);
}
