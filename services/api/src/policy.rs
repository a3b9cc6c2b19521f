//! The compute API's policy: one table row per endpoint (method + path template, and for
//! `POST /servers/{id}/action` the action key), with its rule and Nova's policy name
//! (2023+ "secure RBAC" defaults; see docs/POLICY.md for the per-row citations). The
//! action rows are made from the actions' declarations ([`crate::actions::ACTIONS`]).
//!
//! Invariants:
//! - The router is built only through [`crate::Registrar`], which refuses (panics at
//!   build time) a route without a row in [`ENDPOINTS`]; `every_row_is_routed` checks
//!   the other direction. So no endpoint exists without a policy entry.
//! - [`guard`] runs before every non-public handler: it authenticates the caller, then
//!   for rows whose [`Target`] is a server it answers 404 when the caller may not see
//!   that server (other projects' servers are never a 403, so nothing leaks), then 403
//!   `Policy doesn't allow <name> to be performed.` when the caller's role is not
//!   enough. Both refusals happen before the handler runs, so they append nothing.
//! - Roles are ordered: admin implies member, member implies reader (Keystone's default
//!   implied roles). The admin role is cloud-wide, as in Nova's `base.ADMIN`.
//! - Rules that depend on the request's content beyond the action key
//!   ([`CONDITIONAL`]: `all_tenants`, a requested host on create) are checked by the
//!   handlers, before anything is appended.

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::context::{Caller, BODY_LIMIT};
use crate::error::ApiError;
use crate::ApiState;

pub use apicore::auth::{Role, Rule};

/// What the endpoint's `{id}` names, checked for visibility before the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// No project-owned resource in the path (collections, flavors).
    None,
    /// `{id}` is a server: another project's server is a 404 to non-admins.
    Server,
    /// `{id}` is a server group: another project's group is a 404 to non-admins.
    ServerGroup,
    /// `{id}` is a project (quota sets): Nova's project-scoped rules
    /// (`{'project_id': id}` as the target) refuse non-admins of other projects with
    /// the policy's 403.
    Project,
}

/// One policy row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// HTTP method.
    pub method: &'static str,
    /// Path template as routed (`{id}`, `{key}` placeholders).
    pub path: &'static str,
    /// For `POST /v2.1/servers/{id}/action`: the action key of the body.
    pub action: Option<&'static str>,
    /// Who may call it.
    pub rule: Rule,
    /// Nova's policy name (the one quoted in a 403).
    pub name: &'static str,
    /// What `{id}` names.
    pub target: Target,
}

const fn ep(
    method: &'static str,
    path: &'static str,
    rule: Rule,
    name: &'static str,
    target: Target,
) -> Endpoint {
    Endpoint {
        method,
        path,
        action: None,
        rule,
        name,
        target,
    }
}

/// `POST /v2.1/servers/{id}/action` rows.
pub const ACTION_PATH: &str = "/v2.1/servers/{id}/action";

const fn act(action: &'static str, rule: Rule, name: &'static str) -> Endpoint {
    Endpoint {
        method: "POST",
        path: ACTION_PATH,
        action: Some(action),
        rule,
        name,
        target: Target::Server,
    }
}

/// `POST /v2.1/os-aggregates/{id}/action` rows (one per aggregate action, all admin).
pub const AGGREGATE_ACTION_PATH: &str = "/v2.1/os-aggregates/{id}/action";

const fn agg_act(action: &'static str, name: &'static str) -> Endpoint {
    Endpoint {
        method: "POST",
        path: AGGREGATE_ACTION_PATH,
        action: Some(action),
        rule: Rule::Admin,
        name,
        target: Target::None,
    }
}

/// `POST /v2.1/flavors/{id}/action` rows (flavor access, admin).
pub const FLAVOR_ACTION_PATH: &str = "/v2.1/flavors/{id}/action";

const fn flavor_act(action: &'static str, name: &'static str) -> Endpoint {
    Endpoint {
        method: "POST",
        path: FLAVOR_ACTION_PATH,
        action: Some(action),
        rule: Rule::Admin,
        name,
        target: Target::None,
    }
}

use Rule::{Admin, Authenticated, ProjectManager, ProjectMember, ProjectReader, Public};

/// Every endpoint of the compute API with its rule: [`ROUTES`], then one row per
/// server action, made from its declaration in [`crate::actions::ACTIONS`].
pub static ENDPOINTS: LazyLock<Vec<Endpoint>> = LazyLock::new(|| {
    ROUTES
        .iter()
        .copied()
        .chain(
            crate::actions::ACTIONS
                .iter()
                .map(|a| act(a.name, a.rule, a.policy)),
        )
        .collect()
});

/// The rows of every endpoint but the server actions.
pub const ROUTES: &[Endpoint] = &[
    ep(
        "GET",
        "/",
        Public,
        "(none: version discovery)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1",
        Public,
        "(none: version discovery)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/",
        Public,
        "(none: version discovery)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2",
        Public,
        "(none: version discovery)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/",
        Public,
        "(none: version discovery)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/extensions",
        Authenticated,
        "os_compute_api:extensions",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/extensions/{alias}",
        Authenticated,
        "os_compute_api:extensions",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/servers",
        ProjectReader,
        "os_compute_api:servers:index",
        Target::None,
    ),
    ep(
        "POST",
        "/v2.1/servers",
        ProjectMember,
        "os_compute_api:servers:create",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/servers/detail",
        ProjectReader,
        "os_compute_api:servers:detail",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}",
        ProjectReader,
        "os_compute_api:servers:show",
        Target::Server,
    ),
    ep(
        "PUT",
        "/v2.1/servers/{id}",
        ProjectMember,
        "os_compute_api:servers:update",
        Target::Server,
    ),
    ep(
        "DELETE",
        "/v2.1/servers/{id}",
        ProjectMember,
        "os_compute_api:servers:delete",
        Target::Server,
    ),
    // Nova's image proxy (issue 12): no Nova policy; Glance's rules apply to the image.
    ep(
        "GET",
        "/v2.1/images",
        Authenticated,
        "(none: image proxy)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/images/detail",
        Authenticated,
        "(none: image proxy)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/images/{id}",
        Authenticated,
        "(none: image proxy)",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2.1/images/{id}",
        Authenticated,
        "(none: image proxy)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/images/{id}/metadata",
        Authenticated,
        "(none: image proxy)",
        Target::None,
    ),
    ep(
        "POST",
        "/v2.1/images/{id}/metadata",
        Authenticated,
        "(none: image proxy)",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2.1/images/{id}/metadata",
        Authenticated,
        "(none: image proxy)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/images/{id}/metadata/{key}",
        Authenticated,
        "(none: image proxy)",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2.1/images/{id}/metadata/{key}",
        Authenticated,
        "(none: image proxy)",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2.1/images/{id}/metadata/{key}",
        Authenticated,
        "(none: image proxy)",
        Target::None,
    ),
    // Server sub-resources (issue 12): metadata, tags (2.26), ips, password.
    ep(
        "GET",
        "/v2.1/servers/{id}/metadata",
        ProjectReader,
        "os_compute_api:server-metadata:index",
        Target::Server,
    ),
    ep(
        "POST",
        "/v2.1/servers/{id}/metadata",
        ProjectMember,
        "os_compute_api:server-metadata:create",
        Target::Server,
    ),
    ep(
        "PUT",
        "/v2.1/servers/{id}/metadata",
        ProjectMember,
        "os_compute_api:server-metadata:update_all",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/metadata/{key}",
        ProjectReader,
        "os_compute_api:server-metadata:show",
        Target::Server,
    ),
    ep(
        "PUT",
        "/v2.1/servers/{id}/metadata/{key}",
        ProjectMember,
        "os_compute_api:server-metadata:update",
        Target::Server,
    ),
    ep(
        "DELETE",
        "/v2.1/servers/{id}/metadata/{key}",
        ProjectMember,
        "os_compute_api:server-metadata:delete",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/tags",
        ProjectReader,
        "os_compute_api:os-server-tags:index",
        Target::Server,
    ),
    ep(
        "PUT",
        "/v2.1/servers/{id}/tags",
        ProjectMember,
        "os_compute_api:os-server-tags:update_all",
        Target::Server,
    ),
    ep(
        "DELETE",
        "/v2.1/servers/{id}/tags",
        ProjectMember,
        "os_compute_api:os-server-tags:delete_all",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/tags/{tag}",
        ProjectReader,
        "os_compute_api:os-server-tags:show",
        Target::Server,
    ),
    ep(
        "PUT",
        "/v2.1/servers/{id}/tags/{tag}",
        ProjectMember,
        "os_compute_api:os-server-tags:update",
        Target::Server,
    ),
    ep(
        "DELETE",
        "/v2.1/servers/{id}/tags/{tag}",
        ProjectMember,
        "os_compute_api:os-server-tags:delete",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/ips",
        ProjectReader,
        "os_compute_api:ips:index",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/ips/{network}",
        ProjectReader,
        "os_compute_api:ips:show",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/os-interface",
        ProjectReader,
        "os_compute_api:os-attach-interfaces:list",
        Target::Server,
    ),
    ep(
        "POST",
        "/v2.1/servers/{id}/os-interface",
        ProjectMember,
        "os_compute_api:os-attach-interfaces:create",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/os-interface/{port_id}",
        ProjectReader,
        "os_compute_api:os-attach-interfaces:show",
        Target::Server,
    ),
    ep(
        "DELETE",
        "/v2.1/servers/{id}/os-interface/{port_id}",
        ProjectMember,
        "os_compute_api:os-attach-interfaces:delete",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/os-server-password",
        ProjectReader,
        "os_compute_api:os-server-password:show",
        Target::Server,
    ),
    ep(
        "DELETE",
        "/v2.1/servers/{id}/os-server-password",
        ProjectMember,
        "os_compute_api:os-server-password:clear",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/diagnostics",
        Admin,
        "os_compute_api:os-server-diagnostics",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/flavors",
        Authenticated,
        "(none: flavor index has no policy)",
        Target::None,
    ),
    ep(
        "POST",
        "/v2.1/flavors",
        Admin,
        "os_compute_api:os-flavor-manage:create",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/flavors/detail",
        Authenticated,
        "(none: flavor detail has no policy)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/flavors/{id}",
        Authenticated,
        "(none: flavor show has no policy)",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2.1/flavors/{id}",
        Admin,
        "os_compute_api:os-flavor-manage:update",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2.1/flavors/{id}",
        Admin,
        "os_compute_api:os-flavor-manage:delete",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/flavors/{id}/os-extra_specs",
        ProjectReader,
        "os_compute_api:os-flavor-extra-specs:index",
        Target::None,
    ),
    ep(
        "POST",
        "/v2.1/flavors/{id}/os-extra_specs",
        Admin,
        "os_compute_api:os-flavor-extra-specs:create",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/flavors/{id}/os-extra_specs/{key}",
        ProjectReader,
        "os_compute_api:os-flavor-extra-specs:show",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2.1/flavors/{id}/os-extra_specs/{key}",
        Admin,
        "os_compute_api:os-flavor-extra-specs:update",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2.1/flavors/{id}/os-extra_specs/{key}",
        Admin,
        "os_compute_api:os-flavor-extra-specs:delete",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/flavors/{id}/os-flavor-access",
        Admin,
        "os_compute_api:os-flavor-access",
        Target::None,
    ),
    flavor_act(
        "addTenantAccess",
        "os_compute_api:os-flavor-access:add_tenant_access",
    ),
    flavor_act(
        "removeTenantAccess",
        "os_compute_api:os-flavor-access:remove_tenant_access",
    ),
    // Nova's keypair rules are `admin or user_id:%(user_id)s`: anyone for their own key
    // pairs (no role needed), admins for another user's (CONDITIONAL).
    ep(
        "GET",
        "/v2.1/os-keypairs",
        Authenticated,
        "os_compute_api:os-keypairs:index",
        Target::None,
    ),
    ep(
        "POST",
        "/v2.1/os-keypairs",
        Authenticated,
        "os_compute_api:os-keypairs:create",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-keypairs/{id}",
        Authenticated,
        "os_compute_api:os-keypairs:show",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2.1/os-keypairs/{id}",
        Authenticated,
        "os_compute_api:os-keypairs:delete",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-aggregates",
        Admin,
        "os_compute_api:os-aggregates:index",
        Target::None,
    ),
    ep(
        "POST",
        "/v2.1/os-aggregates",
        Admin,
        "os_compute_api:os-aggregates:create",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-aggregates/{id}",
        Admin,
        "os_compute_api:os-aggregates:show",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2.1/os-aggregates/{id}",
        Admin,
        "os_compute_api:os-aggregates:update",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2.1/os-aggregates/{id}",
        Admin,
        "os_compute_api:os-aggregates:delete",
        Target::None,
    ),
    agg_act("add_host", "os_compute_api:os-aggregates:add_host"),
    agg_act("remove_host", "os_compute_api:os-aggregates:remove_host"),
    agg_act("set_metadata", "os_compute_api:os-aggregates:set_metadata"),
    ep(
        "GET",
        "/v2.1/os-availability-zone",
        Authenticated,
        "os_compute_api:os-availability-zone:list",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-availability-zone/detail",
        Admin,
        "os_compute_api:os-availability-zone:detail",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-server-groups",
        ProjectReader,
        "os_compute_api:os-server-groups:index",
        Target::None,
    ),
    ep(
        "POST",
        "/v2.1/os-server-groups",
        ProjectMember,
        "os_compute_api:os-server-groups:create",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-server-groups/{id}",
        ProjectReader,
        "os_compute_api:os-server-groups:show",
        Target::ServerGroup,
    ),
    ep(
        "DELETE",
        "/v2.1/os-server-groups/{id}",
        ProjectMember,
        "os_compute_api:os-server-groups:delete",
        Target::ServerGroup,
    ),
    ep(
        "GET",
        "/v1/instances/{id}/events",
        ProjectReader,
        "os_compute_api:os-instance-actions:list",
        Target::Server,
    ),
    ep("GET", "/v1/status", Admin, "stratus:status", Target::None),
    // Versioned notifications (issue 11): a project's readers see their own project's.
    ep(
        "GET",
        "/v1/notifications",
        ProjectReader,
        "stratus:notifications:list",
        Target::None,
    ),
    ep(
        "GET",
        "/v1/notifications/stream",
        ProjectReader,
        "stratus:notifications:stream",
        Target::None,
    ),
    // Webhook subscriptions to the notifications (issue 11): admin only.
    ep(
        "POST",
        "/v1/subscriptions",
        Admin,
        "stratus:subscriptions:create",
        Target::None,
    ),
    ep(
        "GET",
        "/v1/subscriptions",
        Admin,
        "stratus:subscriptions:list",
        Target::None,
    ),
    ep(
        "GET",
        "/v1/subscriptions/{id}",
        Admin,
        "stratus:subscriptions:show",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v1/subscriptions/{id}",
        Admin,
        "stratus:subscriptions:delete",
        Target::None,
    ),
    ep(
        "GET",
        "/v1/instances/{id}/state",
        ProjectReader,
        "stratus:audit:state",
        Target::Server,
    ),
    ep(
        "GET",
        "/v1/events",
        ProjectReader,
        "stratus:audit:events",
        Target::None,
    ),
    ep(
        "GET",
        "/v1/events/stream",
        ProjectReader,
        "stratus:audit:events",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-services",
        Admin,
        "os_compute_api:os-services:list",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2.1/os-services/{id}",
        Admin,
        "os_compute_api:os-services:update",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2.1/os-services/{id}",
        Admin,
        "os_compute_api:os-services:delete",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-hypervisors",
        Admin,
        "os_compute_api:os-hypervisors:list",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-hypervisors/detail",
        Admin,
        "os_compute_api:os-hypervisors:list-detail",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-hypervisors/statistics",
        Admin,
        "os_compute_api:os-hypervisors:statistics",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-hypervisors/{id}",
        Admin,
        "os_compute_api:os-hypervisors:show",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-hypervisors/{id}/uptime",
        Admin,
        "os_compute_api:os-hypervisors:uptime",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-hypervisors/{id}/search",
        Admin,
        "os_compute_api:os-hypervisors:search",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-hypervisors/{id}/servers",
        Admin,
        "os_compute_api:os-hypervisors:servers",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-hosts",
        Admin,
        "os_compute_api:os-hosts:list",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-hosts/{id}",
        Admin,
        "os_compute_api:os-hosts:show",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2.1/os-hosts/{id}",
        Admin,
        "os_compute_api:os-hosts:update",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-hosts/{id}/reboot",
        Admin,
        "os_compute_api:os-hosts:reboot",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-hosts/{id}/shutdown",
        Admin,
        "os_compute_api:os-hosts:shutdown",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-hosts/{id}/startup",
        Admin,
        "os_compute_api:os-hosts:start",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-quota-sets/{id}",
        ProjectReader,
        "os_compute_api:os-quota-sets:show",
        Target::Project,
    ),
    ep(
        "PUT",
        "/v2.1/os-quota-sets/{id}",
        Admin,
        "os_compute_api:os-quota-sets:update",
        Target::Project,
    ),
    ep(
        "DELETE",
        "/v2.1/os-quota-sets/{id}",
        Admin,
        "os_compute_api:os-quota-sets:delete",
        Target::Project,
    ),
    ep(
        "GET",
        "/v2.1/os-quota-sets/{id}/detail",
        ProjectReader,
        "os_compute_api:os-quota-sets:detail",
        Target::Project,
    ),
    ep(
        "GET",
        "/v2.1/os-quota-sets/{id}/defaults",
        Authenticated,
        "os_compute_api:os-quota-sets:defaults",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-quota-class-sets/{id}",
        Admin,
        "os_compute_api:os-quota-class-sets:show",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2.1/os-quota-class-sets/{id}",
        Admin,
        "os_compute_api:os-quota-class-sets:update",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/limits",
        Authenticated,
        "os_compute_api:limits",
        Target::None,
    ),
    // Usage (issue 11).
    ep(
        "GET",
        "/v2.1/os-simple-tenant-usage",
        Admin,
        "os_compute_api:os-simple-tenant-usage:list",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-simple-tenant-usage/{id}",
        ProjectReader,
        "os_compute_api:os-simple-tenant-usage:show",
        Target::Project,
    ),
    ep(
        "GET",
        "/v2.1/os-instance_usage_audit_log",
        Admin,
        "os_compute_api:os-instance-usage-audit-log:list",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-instance_usage_audit_log/{id}",
        Admin,
        "os_compute_api:os-instance-usage-audit-log:show",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/os-instance-actions",
        ProjectReader,
        "os_compute_api:os-instance-actions:list",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/os-instance-actions/{request_id}",
        ProjectReader,
        "os_compute_api:os-instance-actions:show",
        Target::Server,
    ),
    // os-server-external-events: Nova's default is the `service` role (Neutron's and
    // Cinder's service users); Stratus models reader / member / admin, so admin (Nova's
    // default before 2023.2; a service user holds admin too).
    ep(
        "POST",
        "/v2.1/os-server-external-events",
        Admin,
        "os_compute_api:os-server-external-events:create",
        Target::None,
    ),
    // Remote consoles (2.6+) and the console proxy's token check (admin).
    ep(
        "POST",
        "/v2.1/servers/{id}/remote-consoles",
        ProjectMember,
        "os_compute_api:os-remote-consoles",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/os-console-auth-tokens/{token}",
        Admin,
        "os_compute_api:os-console-auth-tokens",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/os-security-groups",
        ProjectReader,
        "os_compute_api:os-security-groups:list",
        Target::Server,
    ),
    // os-networks (2.1-2.35): Nova's proxy to Neutron's networks.
    ep(
        "GET",
        "/v2.1/os-networks",
        ProjectReader,
        "os_compute_api:os-networks:list",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-networks/{id}",
        ProjectReader,
        "os_compute_api:os-networks:show",
        Target::None,
    ),
    // Nova's network proxies (2.1-2.35): os-tenant-networks, os-floating-ips,
    // os-floating-ip-pools (floating_ip_proxy.rs).
    ep(
        "GET",
        "/v2.1/os-tenant-networks",
        ProjectReader,
        "os_compute_api:os-tenant-networks:list",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-tenant-networks/{id}",
        ProjectReader,
        "os_compute_api:os-tenant-networks:show",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-floating-ips",
        ProjectReader,
        "os_compute_api:os-floating-ips:list",
        Target::None,
    ),
    ep(
        "POST",
        "/v2.1/os-floating-ips",
        ProjectMember,
        "os_compute_api:os-floating-ips:create",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-floating-ips/{id}",
        ProjectReader,
        "os_compute_api:os-floating-ips:show",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2.1/os-floating-ips/{id}",
        ProjectMember,
        "os_compute_api:os-floating-ips:delete",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-floating-ip-pools",
        Authenticated,
        "os_compute_api:os-floating-ip-pools",
        Target::None,
    ),
    // Nova's security group proxies (2.1-2.35; security_group_proxy.rs).
    ep(
        "GET",
        "/v2.1/os-security-groups",
        ProjectReader,
        "os_compute_api:os-security-groups:get",
        Target::None,
    ),
    ep(
        "POST",
        "/v2.1/os-security-groups",
        ProjectMember,
        "os_compute_api:os-security-groups:create",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/os-security-groups/{id}",
        ProjectReader,
        "os_compute_api:os-security-groups:show",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2.1/os-security-groups/{id}",
        ProjectMember,
        "os_compute_api:os-security-groups:update",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2.1/os-security-groups/{id}",
        ProjectMember,
        "os_compute_api:os-security-groups:delete",
        Target::None,
    ),
    ep(
        "POST",
        "/v2.1/os-security-group-rules",
        ProjectMember,
        "os_compute_api:os-security-groups:rule:create",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2.1/os-security-group-rules/{id}",
        ProjectMember,
        "os_compute_api:os-security-groups:rule:delete",
        Target::None,
    ),
    // Migrations: Nova's project managers list their project's migrations and
    // force-complete or abort their servers' (host fields only for admins: Nova's
    // `index:host`); `show` stays admin.
    ep(
        "GET",
        "/v2.1/os-migrations",
        ProjectManager,
        "os_compute_api:os-migrations:index",
        Target::None,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/migrations",
        ProjectManager,
        "os_compute_api:servers:migrations:index",
        Target::Server,
    ),
    ep(
        "GET",
        "/v2.1/servers/{id}/migrations/{mid}",
        Admin,
        "os_compute_api:servers:migrations:show",
        Target::Server,
    ),
    ep(
        "POST",
        "/v2.1/servers/{id}/migrations/{mid}/action",
        ProjectManager,
        "os_compute_api:servers:migrations:force_complete",
        Target::Server,
    ),
    ep(
        "DELETE",
        "/v2.1/servers/{id}/migrations/{mid}",
        ProjectManager,
        "os_compute_api:servers:migrations:delete",
        Target::Server,
    ),
];

/// A rule that depends on the request's content, checked inside the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conditional {
    /// The endpoint it refines.
    pub method: &'static str,
    /// Its path template.
    pub path: &'static str,
    /// For the action route: the action key of the row it refines.
    pub action: Option<&'static str>,
    /// When it applies.
    pub when: &'static str,
    /// Who may do it.
    pub rule: Rule,
    /// Nova's policy name.
    pub name: &'static str,
}

/// Content-dependent rules enforced by the handlers (documented in docs/POLICY.md).
pub const CONDITIONAL: &[Conditional] = &[
    Conditional {
        method: "GET",
        path: "/v2.1/servers",
        action: None,
        when: "`all_tenants` query",
        rule: Admin,
        name: "os_compute_api:servers:index:get_all_tenants",
    },
    Conditional {
        method: "GET",
        path: "/v2.1/servers/detail",
        action: None,
        when: "`all_tenants` query",
        rule: Admin,
        name: "os_compute_api:servers:detail:get_all_tenants",
    },
    Conditional {
        method: "POST",
        path: "/v2.1/servers",
        action: None,
        when: "a forced host (`availability_zone: \"az:host\"`)",
        rule: Admin,
        name: "os_compute_api:servers:create:forced_host",
    },
    Conditional {
        method: "POST",
        path: "/v2.1/servers",
        action: None,
        when: "a requested destination (2.74 `host` / `hypervisor_hostname`)",
        rule: Admin,
        name: "compute:servers:create:requested_destination",
    },
    Conditional {
        method: "GET",
        path: "/v2.1/os-keypairs",
        action: None,
        when: "another user's `user_id` query (2.10+)",
        rule: Admin,
        name: "os_compute_api:os-keypairs:index",
    },
    Conditional {
        method: "POST",
        path: "/v2.1/os-keypairs",
        action: None,
        when: "another user's `user_id` in the body (2.10+)",
        rule: Admin,
        name: "os_compute_api:os-keypairs:create",
    },
    Conditional {
        method: "GET",
        path: "/v2.1/os-keypairs/{id}",
        action: None,
        when: "another user's `user_id` query (2.10+)",
        rule: Admin,
        name: "os_compute_api:os-keypairs:show",
    },
    Conditional {
        method: "DELETE",
        path: "/v2.1/os-keypairs/{id}",
        action: None,
        when: "another user's `user_id` query (2.10+)",
        rule: Admin,
        name: "os_compute_api:os-keypairs:delete",
    },
    Conditional {
        method: "GET",
        path: "/v2.1/limits",
        action: None,
        when: "`tenant_id` query (another project's limits)",
        rule: Admin,
        name: "os_compute_api:limits:other_project",
    },
    Conditional {
        method: "GET",
        path: "/v2.1/os-migrations",
        action: None,
        when: "no `project_id` query, or another project's",
        rule: Admin,
        name: "os_compute_api:os-migrations:index:all_projects",
    },
    Conditional {
        method: "POST",
        path: "/v2.1/servers/{id}/action",
        action: Some("migrate"),
        when: "`migrate` to a named `host` (2.56+)",
        rule: Admin,
        name: "os_compute_api:os-migrate-server:migrate:host",
    },
    Conditional {
        method: "POST",
        path: "/v2.1/servers/{id}/action",
        action: Some("os-migrateLive"),
        when: "`os-migrateLive` to a named `host`",
        rule: Admin,
        name: "os_compute_api:os-migrate-server:migrate_live:host",
    },
];

/// The Nova file that defines policy `name` (for docs/POLICY.md).
pub fn nova_source(name: &str) -> String {
    if name.starts_with("(none: version") {
        return "nova/api/openstack/compute/versions.py (no policy check)".into();
    }
    if name.starts_with("(none: image proxy") {
        return "nova/api/openstack/compute/images.py, image_metadata.py (no policy check: Glance's rules apply)".into();
    }
    if name.starts_with("stratus:") {
        return "(Stratus-native: no Nova policy)".into();
    }
    if name.starts_with("(none") {
        return "nova/api/openstack/compute/flavors.py (no policy check)".into();
    }
    if name.starts_with("os_compute_api:servers:migrations:") {
        return "nova/policies/servers_migrations.py".into();
    }
    // Nova defines the unrescue rule beside the rescue one.
    if name == "os_compute_api:os-unrescue" {
        return "nova/policies/rescue.py".into();
    }
    let family = name
        .strip_prefix("os_compute_api:")
        .or_else(|| name.strip_prefix("compute:"))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or(name);
    format!(
        "nova/policies/{}.py",
        family.trim_start_matches("os-").replace('-', "_")
    )
}

/// The markdown table row documenting `e` in docs/POLICY.md.
pub fn doc_row(e: &Endpoint) -> String {
    format!(
        "| `{} {}` | {} | {} | `{}` | {} |",
        e.method,
        e.path,
        e.action.map(|a| format!("`{a}`")).unwrap_or_default(),
        e.rule.label(),
        e.name,
        nova_source(e.name)
    )
}

/// The markdown table row documenting `c` in docs/POLICY.md.
pub fn conditional_doc_row(c: &Conditional) -> String {
    format!(
        "| `{} {}` | {} | {} | `{}` | {} |",
        c.method,
        c.path,
        c.when,
        c.rule.label(),
        c.name,
        nova_source(c.name)
    )
}

/// The rows of `method` + `path` (several for the action route).
pub fn rows(method: &Method, path: &str) -> Vec<&'static Endpoint> {
    ENDPOINTS
        .iter()
        .filter(|e| e.method == method.as_str() && e.path == path)
        .collect()
}

/// What the guard of one route knows.
#[derive(Clone)]
pub struct Guard {
    /// API state (auth, world).
    pub state: ApiState,
    /// The route's rows.
    pub rows: Vec<&'static Endpoint>,
}

pub use apicore::util::path_id;

/// Per-route middleware: authenticate, hide other projects' servers (404), enforce the
/// row's rule (403). See the module invariants.
pub async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    if g.rows.iter().all(|r| r.rule == Rule::Public) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let caller = match Caller::authenticate(&parts, &g.state) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    // The action route: the row is chosen by the body's single key. A body that names
    // no known action goes on to the handler, which refuses it (400) without appending.
    let (row, body) = if g.rows.iter().any(|r| r.action.is_some()) {
        let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
            Ok(b) => b,
            Err(_) => return ApiError::too_large().into_response(),
        };
        let key = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| match v {
                serde_json::Value::Object(o) if o.len() == 1 => o.keys().next().cloned(),
                _ => None,
            });
        let row = key.and_then(|k| {
            g.rows
                .iter()
                .copied()
                .find(|r| r.action == Some(k.as_str()))
        });
        (row, Body::from(bytes))
    } else {
        (g.rows.first().copied(), body)
    };
    if let Some(row) = row {
        if row.target == Target::Server {
            let id = path_id(row.path, parts.uri.path()).unwrap_or_default();
            let views = g.state.engine.world().read();
            let visible = domain::InstanceId::parse(id)
                .and_then(|iid| views.instances().get(&iid))
                .and_then(|r| r.state())
                .is_some_and(|i| caller.can_see(&i.spec.project_id));
            if !visible {
                return ApiError::instance_not_found(id).into_response();
            }
        }
        if row.target == Target::ServerGroup {
            let id = path_id(row.path, parts.uri.path()).unwrap_or_default();
            let views = g.state.engine.world().read();
            let visible = domain::ServerGroupId::parse(id)
                .and_then(|gid| views.server_groups().group(&gid))
                .is_some_and(|sg| caller.can_see(&sg.project_id));
            if !visible {
                return ApiError::not_found(format!("Instance group {id} could not be found."))
                    .into_response();
            }
        }
        let other_project = row.target == Target::Project
            && !caller.is_admin
            && path_id(row.path, parts.uri.path()).is_some_and(|id| id != caller.project);
        if other_project || !row.rule.allows(caller.role) {
            tracing::info!(rule = row.name, role = ?caller.role, "policy refused");
            return ApiError::policy(row.name).into_response();
        }
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_rules_follow() {
        assert_eq!(Role::highest(["reader", "member"]), Some(Role::Member));
        assert_eq!(Role::highest(["other"]), None);
        assert!(Rule::ProjectReader.allows(Some(Role::Reader)));
        assert!(!Rule::ProjectMember.allows(Some(Role::Reader)));
        assert!(Rule::ProjectMember.allows(Some(Role::Admin)));
        assert!(!Rule::Admin.allows(Some(Role::Member)));
        assert!(!Rule::ProjectReader.allows(None));
        assert!(Rule::Authenticated.allows(None));
    }

    #[test]
    fn rows_are_unique() {
        for (i, a) in ENDPOINTS.iter().enumerate() {
            assert!(
                a.action.is_none()
                    || [ACTION_PATH, AGGREGATE_ACTION_PATH, FLAVOR_ACTION_PATH].contains(&a.path),
                "an action row off the action route: {a:?}"
            );
            for b in &ENDPOINTS[i + 1..] {
                assert!(
                    (a.method, a.path, a.action) != (b.method, b.path, b.action),
                    "duplicate row {a:?}"
                );
            }
        }
    }

    /// docs/POLICY.md documents every row exactly as the table says.
    #[test]
    fn docs_match_the_table() {
        let doc = include_str!("../../../docs/POLICY.md");
        let mut missing = Vec::new();
        for row in ENDPOINTS.iter().map(doc_row) {
            if !doc.lines().any(|l| l == row) {
                missing.push(row);
            }
        }
        for row in CONDITIONAL.iter().map(conditional_doc_row) {
            if !doc.lines().any(|l| l == row) {
                missing.push(row);
            }
        }
        assert!(
            missing.is_empty(),
            "docs/POLICY.md lacks these rows:\n{}",
            missing.join("\n")
        );
    }

    #[test]
    fn nova_sources() {
        assert_eq!(
            nova_source("os_compute_api:os-pause-server:pause"),
            "nova/policies/pause_server.py"
        );
        assert_eq!(
            nova_source("compute:servers:create:requested_destination"),
            "nova/policies/servers.py"
        );
        assert_eq!(
            nova_source("os_compute_api:os-flavor-extra-specs:index"),
            "nova/policies/flavor_extra_specs.py"
        );
    }

    #[test]
    fn path_ids() {
        assert_eq!(
            path_id(ACTION_PATH, "/v2.1/servers/abc/action"),
            Some("abc")
        );
        assert_eq!(
            path_id("/v1/instances/{id}/events", "/v1/instances/x/events"),
            Some("x")
        );
    }
}
