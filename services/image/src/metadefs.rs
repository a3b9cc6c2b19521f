//! Glance's metadata-definitions API (`/v2/metadefs/...`): namespaces, their objects,
//! properties, tags and resource-type associations, and the resource-type catalogue.
//!
//! Invariants:
//! - Writes are `engine.metadef(..)` commands on the one metadefs subject; reads come
//!   from the world (read-your-writes). The policy table makes every write admin-only
//!   (Glance's `metadef_admin`); reads need a reader role.
//! - A private namespace of another project is a 404 (Glance's repository hides it),
//!   for its children too.
//! - Bodies are checked here (types, required fields, read-only attributes) before any
//!   command runs, so bad input appends nothing; property definitions are kept as the
//!   JSON text of the object the client sent (its `name` set from the path or body).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use domain::metadef::{
    AssociationSpec, MetadefCommand, MetadefSet, Namespace, NamespaceFields, NewNamespace,
    NsVisibility, ObjectSpec, Stamped, SEEDED_RESOURCE_TYPES,
};
use serde_json::{json, Map, Value};

use crate::auth::Caller;
use crate::error::ImageError;
use crate::extract::{Path, Path2};
use crate::{read_json, ImageState};

/// Property types Glance's property schema allows.
const PROPERTY_TYPES: &[&str] = &[
    "array", "boolean", "integer", "number", "object", "string", "null",
];

/// Time of the seeded resource types: Glance shows the time `db_load_metadefs` ran;
/// Stratus's catalogue is built in, so it shows the epoch.
const SEED_TIME: &str = "1970-01-01T00:00:00Z";

fn iso(t: domain::Timestamp) -> String {
    apicore::util::iso_z(t)
}

fn set_of(st: &ImageState) -> MetadefSet {
    st.engine.world().read().metadefs().set().0.clone()
}

fn visible(set: &MetadefSet, name: &str, caller: &Caller) -> Result<Namespace, ImageError> {
    Ok(set.visible(name, &caller.ctx())?.clone())
}

async fn run(st: &ImageState, caller: &Caller, cmd: MetadefCommand) -> Result<(), ImageError> {
    st.engine
        .metadef(cmd, &caller.ctx(), &caller.meta())
        .await
        .map(|_| ())
        .map_err(Into::into)
}

fn object_body(v: &Value) -> Result<&Map<String, Value>, ImageError> {
    let m = v
        .as_object()
        .ok_or_else(|| ImageError::bad_request("Body expected in request."))?;
    for key in ["self", "schema", "created_at", "updated_at"] {
        if m.contains_key(key) {
            return Err(ImageError::forbidden(format!(
                "Attribute '{key}' is read-only."
            )));
        }
    }
    Ok(m)
}

fn opt_str(m: &Map<String, Value>, key: &str) -> Result<Option<String>, ImageError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ImageError::bad_request(format!(
            "Invalid input for field/attribute {key}. Value: {other}. {other} is not of type 'string'"
        ))),
    }
}

fn req_str(m: &Map<String, Value>, key: &str) -> Result<String, ImageError> {
    opt_str(m, key)?.ok_or_else(|| {
        ImageError::bad_request(format!(
            "Invalid input for field/attribute {key}. Value: None. Mandatory field missing."
        ))
    })
}

fn opt_bool(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, ImageError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ImageError::bad_request(format!(
            "Invalid input for field/attribute {key}. Value: {other}. {other} is not of type 'boolean'"
        ))),
    }
}

fn fields(m: &Map<String, Value>, caller: &Caller) -> Result<NamespaceFields, ImageError> {
    let visibility = match opt_str(m, "visibility")? {
        None => NsVisibility::Private,
        Some(v) => NsVisibility::parse(&v).ok_or_else(|| {
            ImageError::bad_request(format!(
                "Invalid input for field/attribute visibility. Value: {v}. '{v}' is not one of ['public', 'private']"
            ))
        })?,
    };
    Ok(NamespaceFields {
        namespace: req_str(m, "namespace")?,
        display_name: opt_str(m, "display_name")?,
        description: opt_str(m, "description")?,
        visibility,
        protected: opt_bool(m, "protected")?.unwrap_or(false),
        owner: opt_str(m, "owner")?.unwrap_or_else(|| caller.project.clone()),
    })
}

fn association(m: &Map<String, Value>) -> Result<AssociationSpec, ImageError> {
    Ok(AssociationSpec {
        name: req_str(m, "name")?,
        prefix: opt_str(m, "prefix")?,
        properties_target: opt_str(m, "properties_target")?,
    })
}

/// A property definition: a JSON object with `title` and a known `type`, kept as text
/// with `name` set to `name`.
fn property(m: &Map<String, Value>, name: &str) -> Result<String, ImageError> {
    req_str(m, "title")?;
    let ty = req_str(m, "type")?;
    if !PROPERTY_TYPES.contains(&ty.as_str()) {
        return Err(ImageError::bad_request(format!(
            "Invalid input for field/attribute type. Value: {ty}. '{ty}' is not one of {PROPERTY_TYPES:?}"
        )));
    }
    let mut def = m.clone();
    def.insert("name".into(), Value::String(name.to_string()));
    Ok(Value::Object(def).to_string())
}

fn properties_map(v: Option<&Value>) -> Result<Vec<(String, String)>, ImageError> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Object(props)) => props
            .iter()
            .map(|(k, v)| {
                let m = v.as_object().ok_or_else(|| {
                    ImageError::bad_request(format!("Property {k} is not an object."))
                })?;
                Ok((k.clone(), property(m, k)?))
            })
            .collect(),
        Some(_) => Err(ImageError::bad_request(
            "Invalid input for field/attribute properties: not an object.",
        )),
    }
}

fn object_spec(m: &Map<String, Value>) -> Result<ObjectSpec, ImageError> {
    let required = match m.get("required") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    ImageError::bad_request("Invalid input for field/attribute required.")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ImageError::bad_request(
                "Invalid input for field/attribute required.",
            ))
        }
    };
    let props: Map<String, Value> = properties_map(m.get("properties"))?
        .into_iter()
        .map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(Value::Null)))
        .collect();
    Ok(ObjectSpec {
        name: req_str(m, "name")?,
        description: opt_str(m, "description")?,
        required,
        properties: Value::Object(props).to_string(),
    })
}

fn tag_names(v: Option<&Value>) -> Result<Vec<String>, ImageError> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| {
                t.as_object()
                    .ok_or_else(|| {
                        ImageError::bad_request("Invalid input for field/attribute tags.")
                    })
                    .and_then(|m| req_str(m, "name"))
            })
            .collect(),
        Some(_) => Err(ImageError::bad_request(
            "Invalid input for field/attribute tags.",
        )),
    }
}

// ---- views ----

fn association_view(a: &Stamped<AssociationSpec>) -> Value {
    let mut v = json!({
        "name": a.item.name,
        "created_at": iso(a.created_at),
        "updated_at": iso(a.updated_at),
    });
    if let Some(p) = &a.item.prefix {
        v["prefix"] = json!(p);
    }
    if let Some(t) = &a.item.properties_target {
        v["properties_target"] = json!(t);
    }
    v
}

fn property_view(def: &str) -> Value {
    serde_json::from_str(def).unwrap_or_else(|_| json!({}))
}

fn object_view(ns: &str, o: &Stamped<ObjectSpec>) -> Value {
    let mut v = json!({
        "name": o.item.name,
        "required": o.item.required,
        "properties": property_view(&o.item.properties),
        "created_at": iso(o.created_at),
        "updated_at": iso(o.updated_at),
        "schema": "/v2/schemas/metadefs/object",
        "self": format!("/v2/metadefs/namespaces/{ns}/objects/{}", o.item.name),
    });
    if let Some(d) = &o.item.description {
        v["description"] = json!(d);
    }
    v
}

fn tag_view(t: &Stamped<String>) -> Value {
    json!({
        "name": t.item,
        "created_at": iso(t.created_at),
        "updated_at": iso(t.updated_at),
    })
}

/// A namespace as Glance shows it; `full` adds its objects, properties and tags (show).
fn namespace_view(ns: &Namespace, full: bool) -> Value {
    let f = &ns.fields;
    let mut v = json!({
        "namespace": f.namespace,
        "visibility": f.visibility.as_str(),
        "protected": f.protected,
        "owner": f.owner,
        "created_at": iso(ns.created_at),
        "updated_at": iso(ns.updated_at),
        "schema": "/v2/schemas/metadefs/namespace",
        "self": format!("/v2/metadefs/namespaces/{}", f.namespace),
    });
    if let Some(d) = &f.display_name {
        v["display_name"] = json!(d);
    }
    if let Some(d) = &f.description {
        v["description"] = json!(d);
    }
    if !ns.associations.is_empty() {
        v["resource_type_associations"] = ns.associations.values().map(association_view).collect();
    }
    if full {
        if !ns.objects.is_empty() {
            v["objects"] = ns
                .objects
                .values()
                .map(|o| object_view(&f.namespace, o))
                .collect();
        }
        if !ns.properties.is_empty() {
            v["properties"] = ns
                .properties
                .iter()
                .map(|(k, p)| (k.clone(), property_view(&p.item)))
                .collect::<Map<_, _>>()
                .into();
        }
        if !ns.tags.is_empty() {
            v["tags"] = ns.tags.values().map(|t| json!({"name": t.item})).collect();
        }
    }
    v
}

fn created(body: Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

// ---- namespaces ----

/// GET /v2/metadefs/namespaces: the namespaces the caller may see, newest first
/// (Glance's default `created_at desc`); `visibility` and `resource_types` filters.
pub async fn list_namespaces(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    axum::extract::Query(q): axum::extract::Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ImageError> {
    let mut visibility = None;
    let mut types: Option<Vec<String>> = None;
    for (k, v) in &q {
        match k.as_str() {
            "visibility" => {
                visibility = Some(NsVisibility::parse(v).ok_or_else(|| {
                    ImageError::bad_request(format!("Invalid visibility value: {v}"))
                })?)
            }
            "resource_types" => types = Some(v.split(',').map(str::to_string).collect()),
            _ => {}
        }
    }
    let set = set_of(&st);
    let ctx = caller.ctx();
    let mut rows: Vec<&Namespace> = set
        .namespaces
        .values()
        .filter(|n| n.visible_to(&ctx))
        .filter(|n| visibility.is_none_or(|v| n.fields.visibility == v))
        .filter(|n| {
            types
                .as_ref()
                .is_none_or(|t| t.iter().any(|t| n.associations.contains_key(t)))
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.created_at, &b.fields.namespace).cmp(&(a.created_at, &a.fields.namespace))
    });
    Ok(Json(json!({
        "namespaces": rows.iter().map(|n| namespace_view(n, false)).collect::<Vec<_>>(),
        "first": "/v2/metadefs/namespaces",
        "schema": "/v2/schemas/metadefs/namespaces",
    })))
}

/// POST /v2/metadefs/namespaces: 201 with the namespace (and `Location`).
pub async fn create_namespace(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ImageError> {
    let body = read_json(body).await?;
    let m = object_body(&body)?;
    let fields = fields(m, &caller)?;
    let associations = match m.get("resource_type_associations") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_object()
                    .ok_or_else(|| {
                        ImageError::bad_request(
                            "Invalid input for field/attribute resource_type_associations.",
                        )
                    })
                    .and_then(association)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ImageError::bad_request(
                "Invalid input for field/attribute resource_type_associations.",
            ))
        }
    };
    let objects = match m.get("objects") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_object()
                    .ok_or_else(|| {
                        ImageError::bad_request("Invalid input for field/attribute objects.")
                    })
                    .and_then(object_spec)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ImageError::bad_request(
                "Invalid input for field/attribute objects.",
            ))
        }
    };
    let name = fields.namespace.clone();
    let new = NewNamespace {
        fields,
        associations,
        objects,
        properties: properties_map(m.get("properties"))?,
        tags: tag_names(m.get("tags"))?,
    };
    run(&st, &caller, MetadefCommand::CreateNamespace(new)).await?;
    let ns = visible(&set_of(&st), &name, &caller)?;
    let location = format!("{}/v2/metadefs/namespaces/{name}", crate::base(&headers));
    let mut resp = created(namespace_view(&ns, true));
    if let Ok(v) = location.parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// GET /v2/metadefs/namespaces/{namespace}
pub async fn show_namespace(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path,
) -> Result<Json<Value>, ImageError> {
    Ok(Json(namespace_view(
        &visible(&set_of(&st), &name, &caller)?,
        true,
    )))
}

/// PUT /v2/metadefs/namespaces/{namespace}: replaces its attributes (absent ones take
/// Glance's defaults: private, unprotected, the caller's project as owner).
pub async fn update_namespace(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path,
    body: Body,
) -> Result<Json<Value>, ImageError> {
    let body = read_json(body).await?;
    let fields = fields(object_body(&body)?, &caller)?;
    let new_name = fields.namespace.clone();
    run(&st, &caller, MetadefCommand::UpdateNamespace(name, fields)).await?;
    Ok(Json(namespace_view(
        &visible(&set_of(&st), &new_name, &caller)?,
        false,
    )))
}

/// DELETE /v2/metadefs/namespaces/{namespace}: 204; 403 when protected.
pub async fn delete_namespace(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path,
) -> Result<StatusCode, ImageError> {
    run(&st, &caller, MetadefCommand::DeleteNamespace(name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- objects ----

/// GET /v2/metadefs/namespaces/{namespace}/objects
pub async fn list_objects(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(ns): Path,
) -> Result<Json<Value>, ImageError> {
    let n = visible(&set_of(&st), &ns, &caller)?;
    let mut objs: Vec<_> = n.objects.values().collect();
    objs.sort_by(|a, b| (b.created_at, &b.item.name).cmp(&(a.created_at, &a.item.name)));
    Ok(Json(json!({
        "objects": objs.into_iter().map(|o| object_view(&ns, o)).collect::<Vec<_>>(),
        "schema": "v2/schemas/metadefs/objects",
    })))
}

/// POST /v2/metadefs/namespaces/{namespace}/objects: 201.
pub async fn create_object(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(ns): Path,
    body: Body,
) -> Result<Response, ImageError> {
    let body = read_json(body).await?;
    let object = object_spec(object_body(&body)?)?;
    let name = object.name.clone();
    run(
        &st,
        &caller,
        MetadefCommand::PutObject {
            namespace: ns.clone(),
            replaces: None,
            object,
        },
    )
    .await?;
    let n = visible(&set_of(&st), &ns, &caller)?;
    let o = n.objects.get(&name).ok_or_else(gone)?;
    Ok(created(object_view(&ns, o)))
}

fn gone() -> ImageError {
    ImageError::new(StatusCode::NOT_FOUND, "The resource could not be found.")
}

/// GET /v2/metadefs/namespaces/{namespace}/objects/{object}
pub async fn show_object(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(ns, name): Path2,
) -> Result<Json<Value>, ImageError> {
    let n = visible(&set_of(&st), &ns, &caller)?;
    let o = n.objects.get(&name).ok_or_else(|| {
        ImageError::new(
            StatusCode::NOT_FOUND,
            format!(
                "The metadata definition object with name={name} was not found in namespace={ns}."
            ),
        )
    })?;
    Ok(Json(object_view(&ns, o)))
}

/// PUT /v2/metadefs/namespaces/{namespace}/objects/{object}: replaces it (may rename).
pub async fn update_object(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(ns, name): Path2,
    body: Body,
) -> Result<Json<Value>, ImageError> {
    let body = read_json(body).await?;
    let object = object_spec(object_body(&body)?)?;
    let new_name = object.name.clone();
    run(
        &st,
        &caller,
        MetadefCommand::PutObject {
            namespace: ns.clone(),
            replaces: Some(name),
            object,
        },
    )
    .await?;
    let n = visible(&set_of(&st), &ns, &caller)?;
    let o = n.objects.get(&new_name).ok_or_else(gone)?;
    Ok(Json(object_view(&ns, o)))
}

/// DELETE /v2/metadefs/namespaces/{namespace}/objects/{object}: 204.
pub async fn delete_object(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(namespace, name): Path2,
) -> Result<StatusCode, ImageError> {
    run(
        &st,
        &caller,
        MetadefCommand::DeleteObject { namespace, name },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- properties ----

/// GET /v2/metadefs/namespaces/{namespace}/properties: `{"properties": {name: def}}`.
pub async fn list_properties(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(ns): Path,
) -> Result<Json<Value>, ImageError> {
    let n = visible(&set_of(&st), &ns, &caller)?;
    let props: Map<String, Value> = n
        .properties
        .iter()
        .map(|(k, p)| (k.clone(), property_view(&p.item)))
        .collect();
    Ok(Json(json!({ "properties": props })))
}

/// POST /v2/metadefs/namespaces/{namespace}/properties: 201 with the definition.
pub async fn create_property(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(ns): Path,
    body: Body,
) -> Result<Response, ImageError> {
    let body = read_json(body).await?;
    let m = object_body(&body)?;
    let name = req_str(m, "name")?;
    let definition = property(m, &name)?;
    run(
        &st,
        &caller,
        MetadefCommand::PutProperty {
            namespace: ns,
            replaces: None,
            name,
            definition: definition.clone(),
        },
    )
    .await?;
    Ok(created(property_view(&definition)))
}

/// GET /v2/metadefs/namespaces/{namespace}/properties/{property}
pub async fn show_property(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(ns, name): Path2,
) -> Result<Json<Value>, ImageError> {
    let n = visible(&set_of(&st), &ns, &caller)?;
    let p = n.properties.get(&name).ok_or_else(|| {
        ImageError::new(
            StatusCode::NOT_FOUND,
            format!(
                "The metadata definition property with name={name} was not found in namespace={ns}."
            ),
        )
    })?;
    Ok(Json(property_view(&p.item)))
}

/// PUT /v2/metadefs/namespaces/{namespace}/properties/{property}: replaces it (the
/// body's `name` may rename it).
pub async fn update_property(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(ns, name): Path2,
    body: Body,
) -> Result<Json<Value>, ImageError> {
    let body = read_json(body).await?;
    let m = object_body(&body)?;
    let new_name = req_str(m, "name")?;
    let definition = property(m, &new_name)?;
    run(
        &st,
        &caller,
        MetadefCommand::PutProperty {
            namespace: ns,
            replaces: Some(name),
            name: new_name,
            definition: definition.clone(),
        },
    )
    .await?;
    Ok(Json(property_view(&definition)))
}

/// DELETE /v2/metadefs/namespaces/{namespace}/properties/{property}: 204.
pub async fn delete_property(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(namespace, name): Path2,
) -> Result<StatusCode, ImageError> {
    run(
        &st,
        &caller,
        MetadefCommand::DeleteProperty { namespace, name },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- tags ----

fn sorted_tags(n: &Namespace) -> Vec<Value> {
    let mut tags: Vec<_> = n.tags.values().collect();
    tags.sort_by(|a, b| (a.created_at, &a.item).cmp(&(b.created_at, &b.item)));
    tags.into_iter().map(tag_view).collect()
}

/// GET /v2/metadefs/namespaces/{namespace}/tags
pub async fn list_tags(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(ns): Path,
) -> Result<Json<Value>, ImageError> {
    let n = visible(&set_of(&st), &ns, &caller)?;
    Ok(Json(json!({ "tags": sorted_tags(&n) })))
}

/// POST /v2/metadefs/namespaces/{namespace}/tags: replaces every tag (Glance without
/// `X-Openstack-Append`; with `X-Openstack-Append: true` the new tags are added), 201.
pub async fn create_tags(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(ns): Path,
    body: Body,
) -> Result<Response, ImageError> {
    let body = read_json(body).await?;
    let m = object_body(&body)?;
    let mut tags = tag_names(m.get("tags"))?;
    let append = headers
        .get("x-openstack-append")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if append {
        let n = visible(&set_of(&st), &ns, &caller)?;
        let mut all: Vec<String> = n.tags.keys().cloned().collect();
        all.append(&mut tags);
        tags = all;
    }
    run(
        &st,
        &caller,
        MetadefCommand::ReplaceTags {
            namespace: ns.clone(),
            tags: tags.clone(),
        },
    )
    .await?;
    Ok(created(json!({
        "tags": tags.iter().map(|t| json!({"name": t})).collect::<Vec<_>>()
    })))
}

/// DELETE /v2/metadefs/namespaces/{namespace}/tags: 204.
pub async fn delete_tags(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(ns): Path,
) -> Result<StatusCode, ImageError> {
    run(
        &st,
        &caller,
        MetadefCommand::ReplaceTags {
            namespace: ns,
            tags: vec![],
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn tag_of(st: &ImageState, caller: &Caller, ns: &str, name: &str) -> Result<Value, ImageError> {
    let n = visible(&set_of(st), ns, caller)?;
    n.tags.get(name).map(tag_view).ok_or_else(|| {
        ImageError::new(
            StatusCode::NOT_FOUND,
            format!(
                "The metadata definition tag with name={name} was not found in namespace={ns}."
            ),
        )
    })
}

/// POST /v2/metadefs/namespaces/{namespace}/tags/{tag}: 201.
pub async fn create_tag(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(ns, name): Path2,
) -> Result<Response, ImageError> {
    run(
        &st,
        &caller,
        MetadefCommand::PutTag {
            namespace: ns.clone(),
            replaces: None,
            name: name.clone(),
        },
    )
    .await?;
    Ok(created(tag_of(&st, &caller, &ns, &name)?))
}

/// GET /v2/metadefs/namespaces/{namespace}/tags/{tag}
pub async fn show_tag(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(ns, name): Path2,
) -> Result<Json<Value>, ImageError> {
    Ok(Json(tag_of(&st, &caller, &ns, &name)?))
}

/// PUT /v2/metadefs/namespaces/{namespace}/tags/{tag}: renames it (`{"name": ...}`).
pub async fn update_tag(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(ns, name): Path2,
    body: Body,
) -> Result<Json<Value>, ImageError> {
    let body = read_json(body).await?;
    let new_name = req_str(object_body(&body)?, "name")?;
    run(
        &st,
        &caller,
        MetadefCommand::PutTag {
            namespace: ns.clone(),
            replaces: Some(name),
            name: new_name.clone(),
        },
    )
    .await?;
    Ok(Json(tag_of(&st, &caller, &ns, &new_name)?))
}

/// DELETE /v2/metadefs/namespaces/{namespace}/tags/{tag}: 204.
pub async fn delete_tag(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(namespace, name): Path2,
) -> Result<StatusCode, ImageError> {
    run(&st, &caller, MetadefCommand::DeleteTag { namespace, name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- resource types ----

/// GET /v2/metadefs/resource_types: the seeded catalogue and the types associations
/// named since, by name.
pub async fn list_resource_types(State(st): State<ImageState>) -> Json<Value> {
    let set = set_of(&st);
    let mut all: Vec<(String, String)> = SEEDED_RESOURCE_TYPES
        .iter()
        .map(|n| (n.to_string(), SEED_TIME.to_string()))
        .chain(set.resource_types.iter().map(|(n, t)| (n.clone(), iso(*t))))
        .collect();
    all.sort();
    Json(json!({
        "resource_types": all
            .into_iter()
            .map(|(name, t)| json!({"name": name, "created_at": t, "updated_at": t}))
            .collect::<Vec<_>>()
    }))
}

/// GET /v2/metadefs/namespaces/{namespace}/resource_types
pub async fn list_associations(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(ns): Path,
) -> Result<Json<Value>, ImageError> {
    let n = visible(&set_of(&st), &ns, &caller)?;
    Ok(Json(json!({
        "resource_type_associations":
            n.associations.values().map(association_view).collect::<Vec<_>>()
    })))
}

/// POST /v2/metadefs/namespaces/{namespace}/resource_types: 201.
pub async fn create_association(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path(ns): Path,
    body: Body,
) -> Result<Response, ImageError> {
    let body = read_json(body).await?;
    let a = association(object_body(&body)?)?;
    let name = a.name.clone();
    run(
        &st,
        &caller,
        MetadefCommand::AddAssociation {
            namespace: ns.clone(),
            association: a,
        },
    )
    .await?;
    let n = visible(&set_of(&st), &ns, &caller)?;
    let a = n.associations.get(&name).ok_or_else(gone)?;
    Ok(created(association_view(a)))
}

/// DELETE /v2/metadefs/namespaces/{namespace}/resource_types/{resource_type}: 204.
pub async fn delete_association(
    State(st): State<ImageState>,
    Extension(caller): Extension<Caller>,
    Path2(namespace, name): Path2,
) -> Result<StatusCode, ImageError> {
    run(
        &st,
        &caller,
        MetadefCommand::RemoveAssociation { namespace, name },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
