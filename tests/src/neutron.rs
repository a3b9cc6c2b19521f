//! Network API (Neutron) helpers of the harness: one request shape for every network
//! test, and the ids of the default networks.

use serde_json::Value;

use crate::Harness;

pub use network::bootstrap::{PRIVATE_ID, PRIVATE_SUBNET_ID, PUBLIC_ID, PUBLIC_SUBNET_ID};

impl Harness {
    /// A request to the network API (`path` from the root, e.g. `/v2.0/networks`):
    /// status and JSON body (Null when empty).
    pub async fn neutron(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let addr = self
            .stack
            .network_addr
            .expect("the API role serves networks");
        let mut rb = self
            .http
            .request(method, format!("http://{addr}{path}"))
            .header("X-Auth-Token", token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("request");
        let code = r.status().as_u16();
        let bytes = r.bytes().await.expect("body");
        (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// Creates a resource (`network`, `subnet`, `port`...) expecting 201; its JSON.
    pub async fn neutron_create(&self, token: &str, resource: &str, attrs: Value) -> Value {
        let (code, v) = self
            .neutron(
                token,
                reqwest::Method::POST,
                &format!("/v2.0/{}", collection(resource)),
                Some(serde_json::json!({ resource: attrs })),
            )
            .await;
        assert_eq!(code, 201, "create {resource}: {v}");
        v[resource].clone()
    }
}

/// The URL collection of a resource (`security_group` -> `security-groups`).
pub fn collection(resource: &str) -> String {
    match resource {
        "policy" => "policies".into(),
        r => format!("{}s", r.replace('_', "-")),
    }
}
