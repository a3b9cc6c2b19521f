//! The identity API's policy as a table: one row per routed endpoint with who may call
//! it and Keystone's policy name. The handlers (`http`) enforce the rules; the table
//! documents them (docs/POLICY.md, checked by `docs_match_the_table`) and is the oracle
//! of the matrix test (`tests/policy.rs`).
//!
//! Invariants:
//! - Every route of [`crate::route_table`] has exactly one row and every row a route
//!   (`every_route_has_a_row`), so an endpoint cannot be added without a rule.
//! - Admin means the `admin` role on the token's project (Keystone's `admin_required`
//!   for a single domain); reader and member are plain users to identity.
//! - Another user's or project's entity is a 404 to non-admins (never a 403, so
//!   nothing leaks), except for admin-only calls (403) and token validation (Keystone's
//!   403 for another user's token). Refusals append nothing.

use std::fmt;

/// Who may call an identity endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// No token (version documents, password authentication).
    Public,
    /// Any valid token.
    Authenticated,
    /// Any valid token; admins get every entity, others only their own.
    OwnOrAll,
    /// Admin, or the user named in the path is the caller (else 404).
    AdminOrSelf,
    /// Admin, or the caller has a role on the project in the path (else 404).
    AdminOrMember,
    /// Admin, or the subject token is the caller's own (else 403).
    AdminOrOwnToken,
    /// The admin role (else 403).
    Admin,
    /// Only the user named in the path, admins included (else 403).
    SelfOnly,
    /// Admin, or the user named in the path with a member (or manager) role on the
    /// token's project: another user is a 404, a reader itself a 403 (Keystone's
    /// `ADMIN_OR_MEMBER_AND_CRED_OWNER`).
    AdminOrMemberSelf,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Public => "public",
            Rule::Authenticated => "any authenticated",
            Rule::OwnOrAll => "any authenticated: admin all, others their own",
            Rule::AdminOrSelf => "admin, or the user itself (else 404)",
            Rule::AdminOrMember => "admin, or a user with a role on it (else 404)",
            Rule::AdminOrOwnToken => "admin, or the token's own user (else 403)",
            Rule::Admin => "admin (else 403)",
            Rule::SelfOnly => "the user itself only, admins too (else 403)",
            Rule::AdminOrMemberSelf => {
                "admin, or the user itself with a member role (else 404; a reader 403)"
            }
        })
    }
}

/// One policy row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// HTTP method.
    pub method: &'static str,
    /// Path template as routed.
    pub path: &'static str,
    /// Who may call it.
    pub rule: Rule,
    /// Keystone's policy name (quoted in a 403).
    pub name: &'static str,
}

const fn ep(method: &'static str, path: &'static str, rule: Rule, name: &'static str) -> Endpoint {
    Endpoint {
        method,
        path,
        rule,
        name,
    }
}

const ASSIGNMENT: &str = "/v3/projects/{p}/users/{u}/roles/{r}";
const APP_CREDS: &str = "/v3/users/{id}/application_credentials";
const APP_CRED: &str = "/v3/users/{id}/application_credentials/{cred}";
const ACCESS_RULES: &str = "/v3/users/{id}/access_rules";
const ACCESS_RULE: &str = "/v3/users/{id}/access_rules/{rule}";
const EC2_CREDS: &str = "/v3/users/{id}/credentials/OS-EC2";
const EC2_CRED: &str = "/v3/users/{id}/credentials/OS-EC2/{access}";

use Rule::{
    Admin, AdminOrMember, AdminOrMemberSelf, AdminOrOwnToken, AdminOrSelf, Authenticated, OwnOrAll,
    Public, SelfOnly,
};

/// Every endpoint of the identity API with its rule.
pub const ENDPOINTS: &[Endpoint] = &[
    ep("GET", "/", Public, "(version discovery)"),
    ep("GET", "/v3", Public, "(version discovery)"),
    ep("GET", "/v3/", Public, "(version discovery)"),
    ep(
        "GET",
        "/v3/auth/tokens",
        AdminOrOwnToken,
        "identity:validate_token",
    ),
    ep(
        "HEAD",
        "/v3/auth/tokens",
        AdminOrOwnToken,
        "identity:check_token",
    ),
    ep(
        "POST",
        "/v3/auth/tokens",
        Public,
        "(password authentication)",
    ),
    ep(
        "DELETE",
        "/v3/auth/tokens",
        AdminOrOwnToken,
        "identity:revoke_token",
    ),
    ep("GET", "/v3/auth/projects", Authenticated, "(none)"),
    ep("GET", "/v3/auth/catalog", Authenticated, "(none)"),
    ep("GET", "/v3/projects", OwnOrAll, "identity:list_projects"),
    ep("POST", "/v3/projects", Admin, "identity:create_project"),
    ep(
        "GET",
        "/v3/projects/{id}",
        AdminOrMember,
        "identity:get_project",
    ),
    ep(
        "PATCH",
        "/v3/projects/{id}",
        Admin,
        "identity:update_project",
    ),
    ep(
        "DELETE",
        "/v3/projects/{id}",
        Admin,
        "identity:delete_project",
    ),
    ep("GET", "/v3/users", OwnOrAll, "identity:list_users"),
    ep("POST", "/v3/users", Admin, "identity:create_user"),
    ep("GET", "/v3/users/{id}", AdminOrSelf, "identity:get_user"),
    ep("PATCH", "/v3/users/{id}", Admin, "identity:update_user"),
    ep("DELETE", "/v3/users/{id}", Admin, "identity:delete_user"),
    ep(
        "GET",
        "/v3/users/{id}/projects",
        AdminOrSelf,
        "identity:list_user_projects",
    ),
    ep(
        "POST",
        "/v3/users/{id}/password",
        Public,
        "(self-service password change: the original password authenticates)",
    ),
    ep(
        "GET",
        APP_CREDS,
        AdminOrSelf,
        "identity:list_application_credentials",
    ),
    ep(
        "POST",
        APP_CREDS,
        SelfOnly,
        "identity:create_application_credential",
    ),
    ep(
        "GET",
        APP_CRED,
        AdminOrSelf,
        "identity:get_application_credential",
    ),
    ep(
        "DELETE",
        APP_CRED,
        AdminOrSelf,
        "identity:delete_application_credential",
    ),
    ep(
        "GET",
        ACCESS_RULES,
        AdminOrSelf,
        "identity:list_access_rules",
    ),
    ep("GET", ACCESS_RULE, AdminOrSelf, "identity:get_access_rule"),
    ep(
        "DELETE",
        ACCESS_RULE,
        AdminOrSelf,
        "identity:delete_access_rule",
    ),
    ep(
        "GET",
        EC2_CREDS,
        AdminOrSelf,
        "identity:ec2_list_credentials",
    ),
    ep(
        "POST",
        EC2_CREDS,
        AdminOrMemberSelf,
        "identity:ec2_create_credential",
    ),
    ep("GET", EC2_CRED, AdminOrSelf, "identity:ec2_get_credential"),
    ep(
        "DELETE",
        EC2_CRED,
        AdminOrSelf,
        "identity:ec2_delete_credential",
    ),
    ep("GET", "/v3/roles", Authenticated, "identity:list_roles"),
    ep("POST", "/v3/roles", Admin, "identity:create_role"),
    ep("GET", "/v3/roles/{id}", Authenticated, "identity:get_role"),
    ep("DELETE", "/v3/roles/{id}", Admin, "identity:delete_role"),
    ep(
        "GET",
        "/v3/projects/{p}/users/{u}/roles",
        AdminOrSelf,
        "identity:list_grants",
    ),
    ep("PUT", ASSIGNMENT, Admin, "identity:create_grant"),
    ep("HEAD", ASSIGNMENT, AdminOrSelf, "identity:check_grant"),
    ep("GET", ASSIGNMENT, AdminOrSelf, "identity:check_grant"),
    ep("DELETE", ASSIGNMENT, Admin, "identity:revoke_grant"),
    ep(
        "GET",
        "/v3/role_assignments",
        OwnOrAll,
        "identity:list_role_assignments",
    ),
    ep("GET", "/v3/domains", Authenticated, "identity:list_domains"),
    ep(
        "GET",
        "/v3/domains/{id}",
        Authenticated,
        "identity:get_domain",
    ),
];

/// The markdown table row documenting `e` in docs/POLICY.md.
pub fn doc_row(e: &Endpoint) -> String {
    format!("| `{} {}` | {} | `{}` |", e.method, e.path, e.rule, e.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_route_has_a_row() {
        let routed: Vec<(String, &str)> = crate::route_table()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p))
            .collect();
        let table: Vec<(String, &str)> = ENDPOINTS
            .iter()
            .map(|e| (e.method.to_string(), e.path))
            .collect();
        assert_eq!(
            routed.iter().collect::<BTreeSet<_>>(),
            table.iter().collect::<BTreeSet<_>>()
        );
        assert_eq!(
            table.len(),
            table.iter().collect::<BTreeSet<_>>().len(),
            "a row twice"
        );
    }

    #[test]
    fn docs_match_the_table() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/POLICY.md"))
                .unwrap();
        for e in ENDPOINTS {
            let line = doc_row(e);
            assert!(doc.contains(&line), "docs/POLICY.md lacks the row:\n{line}");
        }
    }
}
