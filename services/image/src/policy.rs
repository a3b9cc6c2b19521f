//! The image API's policy: one row per routed endpoint with its rule (the compute
//! API's roles and rules, [`apicore::auth::Rule`]) and Glance's policy name (2023+ secure
//! RBAC defaults, glance/policies/image.py).
//!
//! Invariants:
//! - The router is built only from rows: [`crate::router`] looks up every route's row
//!   and panics at build time when there is none; `every_route_has_a_row` checks that
//!   the table and [`crate::route_table`] are the same set.
//! - [`guard`] runs before every non-public handler: it authenticates the caller (and
//!   hands it to the handler as a request extension), then
//!   for rows whose [`Target`] is an image answers 404 when the caller may not see that
//!   image (another project's private image is never a 403, so nothing leaks), then 403
//!   `You are not authorized to complete <name> action.` when the caller's role is not
//!   enough. Both refusals happen before the handler runs, so they append nothing.
//! - Rules that depend on the content (making an image public, changing another
//!   project's image) are checked by the domain (`domain::image`), before anything is
//!   appended; docs/POLICY.md lists them.

use apicore::auth::Rule;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::ImageId;
use uuid::Uuid;

use crate::error::ImageError;
use crate::ImageState;

/// What the endpoint's `{id}` names, checked for visibility before the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// No image in the path.
    None,
    /// `{id}` is an image: one the caller may not see is a 404.
    Image,
}

/// What Glance's `service_api` rule (the `service` role) adds to a row's rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Nothing: the rule alone decides.
    No,
    /// A service caller passes too (`SERVICE_OR_PROJECT_MEMBER`).
    Or,
    /// Only a service caller passes (`SERVICE`).
    Only,
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
    /// Glance's policy name (quoted in a 403).
    pub name: &'static str,
    /// What `{id}` names.
    pub target: Target,
    /// What the `service` role adds.
    pub service: Service,
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
        rule,
        name,
        target,
        service: Service::No,
    }
}

/// A row whose rule the `service` role extends (or replaces).
const fn svc(
    method: &'static str,
    path: &'static str,
    rule: Rule,
    name: &'static str,
    service: Service,
) -> Endpoint {
    Endpoint {
        method,
        path,
        rule,
        name,
        target: Target::Image,
        service,
    }
}

impl Endpoint {
    /// Whether a caller with `role` (and the `service` role or not) passes.
    pub fn allows(&self, role: Option<apicore::auth::Role>, service: bool) -> bool {
        match self.service {
            Service::No => self.rule.allows(role),
            Service::Or => service || self.rule.allows(role),
            Service::Only => service,
        }
    }

    /// Who passes, as docs/POLICY.md says it.
    pub fn label(&self) -> String {
        match self.service {
            Service::No => self.rule.label().to_string(),
            // Glance's SERVICE_OR_PROJECT_MEMBER: `project_id:%(owner)s`, no admin.
            Service::Or => "service or member of the image's project".to_string(),
            Service::Only => "service".to_string(),
        }
    }
}

use Rule::{Admin, Authenticated, ProjectMember, ProjectReader, Public};

/// Every endpoint of the image API with its rule.
pub const ENDPOINTS: &[Endpoint] = &[
    ep(
        "GET",
        "/",
        Public,
        "(none: version discovery)",
        Target::None,
    ),
    ep(
        "GET",
        "/versions",
        Public,
        "(none: version discovery)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/images",
        ProjectReader,
        "get_images",
        Target::None,
    ),
    ep(
        "POST",
        "/v2/images",
        ProjectMember,
        "add_image",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/images/{id}",
        ProjectReader,
        "get_image",
        Target::Image,
    ),
    ep(
        "PATCH",
        "/v2/images/{id}",
        ProjectMember,
        "modify_image",
        Target::Image,
    ),
    ep(
        "DELETE",
        "/v2/images/{id}",
        ProjectMember,
        "delete_image",
        Target::Image,
    ),
    ep(
        "GET",
        "/v2/images/{id}/file",
        ProjectReader,
        "download_image",
        Target::Image,
    ),
    ep(
        "GET",
        "/v2/images/{id}/tasks",
        ProjectReader,
        "get_image",
        Target::Image,
    ),
    ep(
        "PUT",
        "/v2/images/{id}/file",
        ProjectMember,
        "upload_image",
        Target::Image,
    ),
    svc(
        "POST",
        "/v2/images/{id}/locations",
        ProjectMember,
        "add_image_location",
        Service::Or,
    ),
    svc(
        "GET",
        "/v2/images/{id}/locations",
        Admin,
        "fetch_image_location",
        Service::Only,
    ),
    ep(
        "PUT",
        "/v2/images/{id}/stage",
        ProjectMember,
        "modify_image",
        Target::Image,
    ),
    ep(
        "POST",
        "/v2/images/{id}/import",
        ProjectMember,
        "modify_image",
        Target::Image,
    ),
    ep(
        "PUT",
        "/v2/images/{id}/tags/{tag}",
        ProjectMember,
        "modify_image",
        Target::Image,
    ),
    ep(
        "DELETE",
        "/v2/images/{id}/tags/{tag}",
        ProjectMember,
        "modify_image",
        Target::Image,
    ),
    ep(
        "GET",
        "/v2/images/{id}/members",
        ProjectReader,
        "get_members",
        Target::Image,
    ),
    ep(
        "POST",
        "/v2/images/{id}/members",
        ProjectMember,
        "add_member",
        Target::Image,
    ),
    ep(
        "GET",
        "/v2/images/{id}/members/{member}",
        ProjectReader,
        "get_member",
        Target::Image,
    ),
    ep(
        "PUT",
        "/v2/images/{id}/members/{member}",
        ProjectMember,
        "modify_member",
        Target::Image,
    ),
    ep(
        "DELETE",
        "/v2/images/{id}/members/{member}",
        ProjectMember,
        "delete_member",
        Target::Image,
    ),
    ep(
        "POST",
        "/v2/images/{id}/actions/deactivate",
        ProjectMember,
        "deactivate",
        Target::Image,
    ),
    ep(
        "POST",
        "/v2/images/{id}/actions/reactivate",
        ProjectMember,
        "reactivate",
        Target::Image,
    ),
    ep("GET", "/v2/tasks", Admin, "tasks_api_access", Target::None),
    ep("POST", "/v2/tasks", Admin, "tasks_api_access", Target::None),
    ep(
        "GET",
        "/v2/tasks/{task_id}",
        Admin,
        "tasks_api_access",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/info/import",
        Authenticated,
        "(none: discovery has no policy)",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2/stores/{store}/{id}",
        Admin,
        "delete_image_location",
        Target::Image,
    ),
    ep(
        "GET",
        "/v2/info/stores",
        Authenticated,
        "(none: discovery has no policy)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/info/stores/detail",
        Admin,
        "stores_info_detail",
        Target::None,
    ),
    ep("GET", "/v2/cache", Admin, "cache_list", Target::None),
    ep("DELETE", "/v2/cache", Admin, "cache_delete", Target::None),
    ep("PUT", "/v2/cache/{id}", Admin, "cache_image", Target::Image),
    ep(
        "DELETE",
        "/v2/cache/{id}",
        Admin,
        "cache_delete",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/metadefs/namespaces",
        ProjectReader,
        "get_metadef_namespaces",
        Target::None,
    ),
    ep(
        "POST",
        "/v2/metadefs/namespaces",
        Admin,
        "add_metadef_namespace",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/metadefs/namespaces/{namespace}",
        ProjectReader,
        "get_metadef_namespace",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2/metadefs/namespaces/{namespace}",
        Admin,
        "modify_metadef_namespace",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2/metadefs/namespaces/{namespace}",
        Admin,
        "delete_metadef_namespace",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/metadefs/namespaces/{namespace}/objects",
        ProjectReader,
        "get_metadef_objects",
        Target::None,
    ),
    ep(
        "POST",
        "/v2/metadefs/namespaces/{namespace}/objects",
        Admin,
        "add_metadef_object",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/metadefs/namespaces/{namespace}/objects/{object}",
        ProjectReader,
        "get_metadef_object",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2/metadefs/namespaces/{namespace}/objects/{object}",
        Admin,
        "modify_metadef_object",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2/metadefs/namespaces/{namespace}/objects/{object}",
        Admin,
        "delete_metadef_object",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/metadefs/namespaces/{namespace}/properties",
        ProjectReader,
        "get_metadef_properties",
        Target::None,
    ),
    ep(
        "POST",
        "/v2/metadefs/namespaces/{namespace}/properties",
        Admin,
        "add_metadef_property",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/metadefs/namespaces/{namespace}/properties/{property}",
        ProjectReader,
        "get_metadef_property",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2/metadefs/namespaces/{namespace}/properties/{property}",
        Admin,
        "modify_metadef_property",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2/metadefs/namespaces/{namespace}/properties/{property}",
        Admin,
        "remove_metadef_property",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/metadefs/namespaces/{namespace}/tags",
        ProjectReader,
        "get_metadef_tags",
        Target::None,
    ),
    ep(
        "POST",
        "/v2/metadefs/namespaces/{namespace}/tags",
        Admin,
        "add_metadef_tags",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2/metadefs/namespaces/{namespace}/tags",
        Admin,
        "delete_metadef_tags",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/metadefs/namespaces/{namespace}/tags/{tag}",
        ProjectReader,
        "get_metadef_tag",
        Target::None,
    ),
    ep(
        "POST",
        "/v2/metadefs/namespaces/{namespace}/tags/{tag}",
        Admin,
        "add_metadef_tag",
        Target::None,
    ),
    ep(
        "PUT",
        "/v2/metadefs/namespaces/{namespace}/tags/{tag}",
        Admin,
        "modify_metadef_tag",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2/metadefs/namespaces/{namespace}/tags/{tag}",
        Admin,
        "delete_metadef_tag",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/metadefs/resource_types",
        ProjectReader,
        "list_metadef_resource_types",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/metadefs/namespaces/{namespace}/resource_types",
        ProjectReader,
        "get_metadef_resource_type",
        Target::None,
    ),
    ep(
        "POST",
        "/v2/metadefs/namespaces/{namespace}/resource_types",
        Admin,
        "add_metadef_resource_type_association",
        Target::None,
    ),
    ep(
        "DELETE",
        "/v2/metadefs/namespaces/{namespace}/resource_types/{resource_type}",
        Admin,
        "remove_metadef_resource_type_association",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/schemas/image",
        Authenticated,
        "(none: schemas have no policy)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/schemas/images",
        Authenticated,
        "(none: schemas have no policy)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/schemas/member",
        Authenticated,
        "(none: schemas have no policy)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/schemas/members",
        Authenticated,
        "(none: schemas have no policy)",
        Target::None,
    ),
    ep(
        "GET",
        "/v2/schemas/metadefs/{kind}",
        Authenticated,
        "(none: schemas have no policy)",
        Target::None,
    ),
];

/// The row of `method path`.
pub fn row(method: &Method, path: &str) -> Option<&'static Endpoint> {
    ENDPOINTS
        .iter()
        .find(|e| e.method == method.as_str() && e.path == path)
}

/// The markdown table row documenting `e` in docs/POLICY.md.
pub fn doc_row(e: &Endpoint) -> String {
    format!(
        "| `{} {}` | {} | `{}` |",
        e.method,
        e.path,
        e.label(),
        e.name
    )
}

/// What the guard of one route knows.
#[derive(Clone)]
pub struct Guard {
    /// Image API state (auth, world).
    pub state: ImageState,
    /// The route's row.
    pub row: &'static Endpoint,
}

/// The 403 for a rule the caller does not pass (Glance's wording).
pub fn refused(name: &str) -> ImageError {
    ImageError::forbidden(format!("You are not authorized to complete {name} action."))
}

/// Per-route middleware: authenticate, hide images the caller may not see (404),
/// enforce the row's rule (403). See the module invariants.
pub async fn guard(State(g): State<Guard>, mut req: Request, next: Next) -> Response {
    if g.row.rule == Rule::Public {
        return next.run(req).await;
    }
    let rid = req
        .extensions()
        .get::<crate::RequestId>()
        .map_or_else(Uuid::new_v4, |r| r.0);
    let caller = match crate::auth::authenticate(
        &g.state.auth,
        &g.state.engine,
        req.headers(),
        req.method(),
        req.uri().path(),
        rid,
    ) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if g.row.target == Target::Image {
        let raw = apicore::util::path_id(g.row.path, req.uri().path()).unwrap_or_default();
        // An id that is not a uuid goes on to the handler, which refuses it (400/404)
        // before anything is appended.
        if let Some(id) = ImageId::parse(raw) {
            let visible = g
                .state
                .engine
                .world()
                .read()
                .image(&id)
                .is_some_and(|i| i.visible_to(&caller.ctx()));
            if !visible {
                return ImageError::image_not_found(raw).into_response();
            }
        } else {
            req.extensions_mut().insert(caller);
            return next.run(req).await;
        }
    }
    if !g.row.allows(caller.role, caller.service) {
        tracing::info!(rule = g.row.name, role = ?caller.role, "policy refused");
        return refused(g.row.name).into_response();
    }
    // The handler takes the caller from here: one token validation per request.
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_route_has_a_row() {
        let routed: BTreeSet<(String, &str)> = crate::route_table()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p))
            .collect();
        let table: BTreeSet<(String, &str)> = ENDPOINTS
            .iter()
            .map(|e| (e.method.to_string(), e.path))
            .collect();
        assert_eq!(routed, table);
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
