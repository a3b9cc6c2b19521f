//! The metadata HTTP service (Nova's nova-api-metadata behind Neutron's metadata proxy):
//! the proxy names the instance in `X-Instance-ID` and `X-Tenant-ID` and signs the id
//! with the shared secret (`X-Instance-ID-Signature`, hex HMAC-SHA256); documents come
//! from the read model of the log.
//!
//! Paths are Nova's: `/` lists the EC2 versions without any check; `/openstack`, its
//! versions and their documents; anything else is the EC2 tree (`/latest/meta-data/...`,
//! `/latest/user-data`, `/<version>/...`). Errors are webob's bodies (plain text, HTML
//! or JSON as the `Accept` header picks), with Nova's codes and explanations.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use projections::world::World;
use sha2::Sha256;

use crate::pyjson::Json;
use crate::{
    resolve_ec2_version, resolve_os_version, InstanceMetadata, Options, APPLICATION_JSON,
    EC2_VERSIONS, OPENSTACK_VERSIONS, TEXT_PLAIN,
};

/// What the service reads and checks with.
#[derive(Clone)]
pub struct MetadataState {
    /// The read model.
    pub world: Arc<World>,
    /// Nova's `[neutron] metadata_proxy_shared_secret`.
    pub secret: Arc<String>,
    /// Document settings.
    pub options: Arc<Options>,
}

/// The service's router (every path goes through one handler, as in Nova).
pub fn router(state: MetadataState) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

/// The hex HMAC-SHA256 of `instance_id` with `secret`: what Neutron's proxy sends in
/// `X-Instance-ID-Signature`.
pub fn sign(secret: &str, instance_id: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(instance_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `signature` is the one of `instance_id` (constant time).
fn signature_ok(secret: &str, instance_id: &str, signature: &str) -> bool {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(instance_id.as_bytes());
    match hex::decode(signature) {
        Ok(sig) => mac.verify_slice(&sig).is_ok(),
        Err(_) => false,
    }
}

/// Python's `posixpath.normpath` of an absolute path: `.` and empty segments dropped,
/// `..` climbs (never above `/`), no trailing slash.
pub fn normpath(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
}

/// A document or listing as it goes out.
struct Doc {
    body: Vec<u8>,
    mime: &'static str,
}

impl Doc {
    fn text(lines: &[&str]) -> Doc {
        Doc {
            body: lines.join("\n").into_bytes(),
            mime: TEXT_PLAIN,
        }
    }
}

async fn handle(State(st): State<MetadataState>, uri: Uri, headers: HeaderMap) -> Response {
    let tokens = normpath(uri.path());
    if tokens.is_empty() {
        let mut v: Vec<&str> = EC2_VERSIONS.to_vec();
        v.push("latest");
        return ok(Doc::text(&v));
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let one = |name: &str| -> Result<Option<String>, ()> {
        let mut all = headers.get_all(name).iter();
        let Some(first) = all.next() else {
            return Ok(None);
        };
        if all.next().is_some() {
            return Err(());
        }
        Ok(Some(String::from_utf8_lossy(first.as_bytes()).into_owned()))
    };
    let bad = |m: &str| webob_error(StatusCode::BAD_REQUEST, "Bad Request", m, accept);
    let instance_id = one("x-instance-id");
    let tenant_id = one("x-tenant-id");
    let signature = one("x-instance-id-signature").ok().flatten();
    let (instance_id, tenant_id) = match (instance_id, signature.as_ref(), tenant_id) {
        (Ok(None), _, _) => return bad("X-Instance-ID header is missing from request."),
        (_, None, _) => return bad("X-Instance-ID-Signature header is missing from request."),
        (_, _, Ok(None)) => return bad("X-Tenant-ID header is missing from request."),
        (Err(()), _, _) => return bad("Multiple X-Instance-ID headers found within request."),
        (_, _, Err(())) => return bad("Multiple X-Tenant-ID headers found within request."),
        (Ok(Some(i)), Some(_), Ok(Some(t))) => (i, t),
    };
    let signature = signature.unwrap_or_default();
    if !signature_ok(&st.secret, &instance_id, &signature) {
        tracing::warn!(
            instance = %instance_id,
            "X-Instance-ID-Signature does not match the expected signature"
        );
        return webob_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Invalid proxy request signature.",
            accept,
        );
    }
    let address = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let md = domain::InstanceId::parse(&instance_id)
        .and_then(|id| InstanceMetadata::from_views(&st.world.read(), &id, &st.options));
    let not_found = || {
        webob_error(
            StatusCode::NOT_FOUND,
            "Not Found",
            "The resource could not be found.",
            accept,
        )
    };
    // An instance of another project is not found (Nova logs and answers 404).
    let Some(md) = md.filter(|m| m.project_id == tenant_id) else {
        return not_found();
    };
    match lookup(&md, &tokens, address.as_deref()) {
        Some(doc) => ok(doc),
        None => not_found(),
    }
}

fn ok(doc: Doc) -> Response {
    let ct = if doc.mime == TEXT_PLAIN {
        "text/plain; charset=UTF-8"
    } else {
        doc.mime
    };
    ([(header::CONTENT_TYPE, ct)], Body::from(doc.body)).into_response()
}

/// Nova's `InstanceMetadata.lookup` over normalised path tokens (non-empty); None: 404.
fn lookup(md: &InstanceMetadata, tokens: &[String], address: Option<&str>) -> Option<Doc> {
    if tokens[0] == "openstack" {
        return openstack(md, &tokens[1..]);
    }
    let rest = if tokens[0] == "ec2" {
        &tokens[1..]
    } else {
        tokens
    };
    ec2(md, rest, address)
}

fn openstack(md: &InstanceMetadata, tokens: &[String]) -> Option<Doc> {
    let Some(version) = tokens.first() else {
        // Versions from the future are hidden from the listing (still served).
        let today = time::OffsetDateTime::now_utc().date().to_string();
        let mut v: Vec<&str> = OPENSTACK_VERSIONS
            .iter()
            .copied()
            .filter(|v| *v <= today.as_str())
            .collect();
        v.push("latest");
        return Some(Doc::text(&v));
    };
    let version = resolve_os_version(version)?;
    let path = tokens[1..].join("/");
    let json = |j: Json| Doc {
        body: j.dumps().into_bytes(),
        mime: APPLICATION_JSON,
    };
    let at_least = |min: &str| crate::os_at_least(version, min);
    match path.as_str() {
        "" | "version" => Some(Doc::text(&md.version_listing(version))),
        "meta_data.json" => Some(json(md.meta_data(version))),
        "user_data" => md.user_data.clone().map(|body| Doc {
            body,
            mime: TEXT_PLAIN,
        }),
        // Nova keeps the password a guest posted in system metadata; none is kept here.
        "password" if at_least(crate::GRIZZLY) => Some(Doc {
            body: Vec::new(),
            mime: TEXT_PLAIN,
        }),
        "vendor_data.json" if at_least(crate::HAVANA) => Some(json(md.vendor_data())),
        "vendor_data2.json" if at_least(crate::NEWTON_TWO) => Some(json(md.vendor_data2())),
        // Nova does not set JSON's type on this one.
        "network_data.json" => Some(Doc {
            body: md.network_data().dumps().into_bytes(),
            mime: TEXT_PLAIN,
        }),
        _ => None,
    }
}

fn ec2(md: &InstanceMetadata, tokens: &[String], address: Option<&str>) -> Option<Doc> {
    let version = resolve_ec2_version(&tokens[0])?;
    let meta = md.ec2_meta_data(version, address);
    match tokens.get(1).map(String::as_str) {
        None => {
            let mut keys = vec!["meta-data/"];
            if md.user_data.is_some() {
                keys.push("user-data");
            }
            Some(Doc::text(&keys))
        }
        Some("user-data") if tokens.len() == 2 => md.user_data.clone().map(|body| Doc {
            body,
            mime: TEXT_PLAIN,
        }),
        Some("meta-data") => {
            let mut node = &meta;
            for t in &tokens[2..] {
                node = node.get(t)?;
            }
            Some(Doc {
                body: ec2_print(node).into_bytes(),
                mime: TEXT_PLAIN,
            })
        }
        _ => None,
    }
}

/// Nova's `ec2_md_print`: a listing of sorted keys (a subtree as `key/`, or its `_name`
/// when it has one), a list one item per line, a leaf as Python prints it.
fn ec2_print(node: &Json) -> String {
    match node {
        Json::Obj(kv) => {
            let mut keys: Vec<&(String, Json)> = kv.iter().filter(|(k, _)| k != "_name").collect();
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            keys.iter()
                .map(|(k, v)| match v {
                    Json::Obj(_) => match v.get("_name") {
                        Some(n) => ec2_print(n),
                        None => format!("{k}/"),
                    },
                    _ => k.clone(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
        Json::Arr(v) => v.iter().map(ec2_print).collect::<Vec<_>>().join("\n"),
        Json::Str(s) => s.clone(),
        Json::Int(n) => n.to_string(),
        Json::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Json::Null => "None".to_string(),
    }
}

/// An error as webob renders Nova's `webob.exc.HTTP*(explanation=...)`: HTML or JSON
/// when `Accept` prefers them, plain text otherwise.
pub fn webob_error(code: StatusCode, title: &str, explanation: &str, accept: &str) -> Response {
    let status = format!("{} {title}", code.as_u16());
    let (ct, body) = match preferred(accept) {
        Some("text/html") => (
            "text/html; charset=UTF-8",
            format!(
                "<html>\n <head>\n  <title>{status}</title>\n </head>\n <body>\n  <h1>{status}</h1>\n  {}<br /><br />\n\n\n\n </body>\n</html>",
                html_escape(explanation)
            ),
        ),
        Some("application/json") => {
            let mut j = Json::obj();
            j.put("message", format!("{explanation}<br /><br />\n\n\n"));
            j.put("code", status.as_str());
            j.put("title", title);
            ("application/json", j.dumps())
        }
        _ => (
            "text/plain; charset=UTF-8",
            format!("{status}\n\n{explanation}\n\n   "),
        ),
    };
    (code, [(header::CONTENT_TYPE, ct)], body).into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#x27;")
}

/// webob's pick between `text/html` and `application/json` for an `Accept` header
/// (highest q wins, HTML on a tie; None: neither is acceptable, plain text).
fn preferred(accept: &str) -> Option<&'static str> {
    let ranges: Vec<(String, f32)> = accept
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let range = parts.next()?.trim().to_ascii_lowercase();
            if range.is_empty() {
                return None;
            }
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").map(str::to_string))
                .next()
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            Some((range, q))
        })
        .collect();
    let q_of = |offer: &str| -> f32 {
        let (ty, _) = offer.split_once('/').unwrap_or((offer, ""));
        // The most specific matching range decides.
        let mut best: Option<(u8, f32)> = None;
        for (r, q) in &ranges {
            let spec = if r == offer {
                3
            } else if *r == format!("{ty}/*") {
                2
            } else if r == "*/*" {
                1
            } else {
                continue;
            };
            if best.is_none_or(|(s, _)| spec > s) {
                best = Some((spec, *q));
            }
        }
        best.map_or(0.0, |(_, q)| q)
    };
    let (html, json) = (q_of("text/html"), q_of("application/json"));
    if html <= 0.0 && json <= 0.0 {
        None
    } else if html >= json {
        Some("text/html")
    } else {
        Some("application/json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normpath_is_pythons() {
        assert!(normpath("/").is_empty());
        assert_eq!(normpath("//latest/./meta-data/"), ["latest", "meta-data"]);
        assert_eq!(normpath("/a/../openstack"), ["openstack"]);
    }

    #[test]
    fn accept_picks_like_webob() {
        assert_eq!(preferred(""), None);
        assert_eq!(preferred("*/*"), Some("text/html"));
        assert_eq!(preferred("application/json"), Some("application/json"));
        assert_eq!(preferred("text/plain"), None);
        assert_eq!(
            preferred("text/html;q=0.5, application/json"),
            Some("application/json")
        );
    }

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        let s = sign("Jefe", "what do ya want for nothing?");
        assert_eq!(
            s,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(signature_ok("Jefe", "what do ya want for nothing?", &s));
        assert!(!signature_ok("Jefe", "x", &s));
        assert!(!signature_ok("Jefe", "x", "zz"));
    }
}
