//! Glance's metadata definitions ("metadefs"): namespaces with their resource-type
//! associations, objects, properties and tags (`stratus.api.metadefs.all`).
//!
//! Every namespace lives in ONE aggregate of the event log, [`MetadefSet`], on one
//! subject: namespace names are unique across projects, and a rename must not collide,
//! so deciding on the whole set and appending with the subject's expected sequence makes
//! uniqueness exact under concurrency. Metadefs are a small catalogue written by admins
//! (Glance's policy: `metadef_admin`), so one subject costs nothing in practice.
//!
//! Invariants (kept by [`decide`]):
//! - namespace names are unique; within a namespace, object, property, association and
//!   tag names are unique (tags case-insensitively, as Glance's unique index);
//! - a protected namespace, and the objects, properties, associations and tags in it,
//!   cannot be deleted (403, Glance's wording);
//! - property and object-property definitions are JSON texts the image service has
//!   validated (JSON objects); the domain stores them verbatim (the log's encoding is
//!   not self-describing, so no JSON values in events);
//! - resource types are Glance's seeded catalogue ([`SEEDED_RESOURCE_TYPES`]) plus
//!   every name first used by an association (Glance creates them so).
//!
//! Authorization by role is the image service's policy table; the domain only decides
//! on content.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Ctx, DomainError, Timestamp};

/// Resource types Glance's `glance-manage db_load_metadefs` seeds (etc/metadefs).
pub const SEEDED_RESOURCE_TYPES: &[&str] = &[
    "OS::Cinder::Volume",
    "OS::Glance::Image",
    "OS::Nova::Aggregate",
    "OS::Nova::Flavor",
    "OS::Nova::Server",
    "OS::Trove::Instance",
];

/// Who sees a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsVisibility {
    /// Every project.
    Public,
    /// Its owner's project (and admins).
    Private,
}

impl NsVisibility {
    /// Glance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            NsVisibility::Public => "public",
            NsVisibility::Private => "private",
        }
    }

    /// Parses Glance's name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(NsVisibility::Public),
            "private" => Some(NsVisibility::Private),
            _ => None,
        }
    }
}

/// The namespace's own attributes (what a create sets and an update replaces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceFields {
    pub namespace: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub visibility: NsVisibility,
    pub protected: bool,
    /// Owner project.
    pub owner: String,
}

/// A resource type a namespace applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociationSpec {
    /// Resource type name (`OS::Glance::Image`).
    pub name: String,
    /// Prefix of the properties when applied to that resource type.
    pub prefix: Option<String>,
    /// Where on the resource the properties go (`image`, `metadata`, ...).
    pub properties_target: Option<String>,
}

/// An object definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectSpec {
    pub name: String,
    pub description: Option<String>,
    /// Required property names.
    pub required: Vec<String>,
    /// The object's properties: a JSON object of property definitions, as text.
    pub properties: String,
}

/// A stored child with its times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped<T> {
    pub item: T,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One namespace with its children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub fields: NamespaceFields,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Associations by resource type name.
    pub associations: BTreeMap<String, Stamped<AssociationSpec>>,
    /// Objects by name.
    pub objects: BTreeMap<String, Stamped<ObjectSpec>>,
    /// Property definitions (JSON object text) by name.
    pub properties: BTreeMap<String, Stamped<String>>,
    /// Tags by name (the value is the name itself).
    pub tags: BTreeMap<String, Stamped<String>>,
}

impl Namespace {
    /// Whether the caller of `ctx` may see it: admins, its owner's project, and
    /// everyone for a public namespace (Glance's `get_metadef_namespace`).
    pub fn visible_to(&self, ctx: &Ctx) -> bool {
        ctx.is_admin
            || self.fields.visibility == NsVisibility::Public
            || self.fields.owner == ctx.project_id
    }
}

/// Every namespace and the resource types (the state of the one subject).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetadefSet {
    /// Namespaces by name.
    pub namespaces: BTreeMap<String, Namespace>,
    /// Resource types first named by an association (not seeded), with the time.
    pub resource_types: BTreeMap<String, Timestamp>,
}

impl MetadefSet {
    /// The namespace `name` if the caller may see it (else a 404, never a 403).
    pub fn visible(&self, name: &str, ctx: &Ctx) -> Result<&Namespace, DomainError> {
        self.namespaces
            .get(name)
            .filter(|n| n.visible_to(ctx))
            .ok_or_else(|| ns_not_found(name))
    }
}

/// What a namespace is created with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewNamespace {
    pub fields: NamespaceFields,
    pub associations: Vec<AssociationSpec>,
    pub objects: Vec<ObjectSpec>,
    /// `(name, definition JSON text)`.
    pub properties: Vec<(String, String)>,
    pub tags: Vec<String>,
}

/// Commands on the metadefs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadefCommand {
    CreateNamespace(NewNamespace),
    /// Replace the attributes of namespace `.0` (may rename it).
    UpdateNamespace(String, NamespaceFields),
    DeleteNamespace(String),
    /// Create (`replaces` None) or replace object `replaces` in `namespace`.
    PutObject {
        namespace: String,
        replaces: Option<String>,
        object: ObjectSpec,
    },
    DeleteObject {
        namespace: String,
        name: String,
    },
    /// Create or replace a property definition.
    PutProperty {
        namespace: String,
        replaces: Option<String>,
        name: String,
        definition: String,
    },
    DeleteProperty {
        namespace: String,
        name: String,
    },
    /// Replace every tag of the namespace (`POST .../tags`; empty: delete all).
    ReplaceTags {
        namespace: String,
        tags: Vec<String>,
    },
    /// Create or rename a tag.
    PutTag {
        namespace: String,
        replaces: Option<String>,
        name: String,
    },
    DeleteTag {
        namespace: String,
        name: String,
    },
    AddAssociation {
        namespace: String,
        association: AssociationSpec,
    },
    RemoveAssociation {
        namespace: String,
        name: String,
    },
}

/// Events of the metadefs subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadefEvent {
    /// `metadef.namespace_created`
    NamespaceCreated { new: NewNamespace, at: Timestamp },
    /// `metadef.namespace_updated`
    NamespaceUpdated {
        namespace: String,
        fields: NamespaceFields,
        at: Timestamp,
    },
    /// `metadef.namespace_deleted`
    NamespaceDeleted { namespace: String, at: Timestamp },
    /// `metadef.object_put`
    ObjectPut {
        namespace: String,
        replaces: Option<String>,
        object: ObjectSpec,
        at: Timestamp,
    },
    /// `metadef.object_deleted`
    ObjectDeleted {
        namespace: String,
        name: String,
        at: Timestamp,
    },
    /// `metadef.property_put`
    PropertyPut {
        namespace: String,
        replaces: Option<String>,
        name: String,
        definition: String,
        at: Timestamp,
    },
    /// `metadef.property_deleted`
    PropertyDeleted {
        namespace: String,
        name: String,
        at: Timestamp,
    },
    /// `metadef.tags_replaced`
    TagsReplaced {
        namespace: String,
        tags: Vec<String>,
        at: Timestamp,
    },
    /// `metadef.tag_put`
    TagPut {
        namespace: String,
        replaces: Option<String>,
        name: String,
        at: Timestamp,
    },
    /// `metadef.tag_deleted`
    TagDeleted {
        namespace: String,
        name: String,
        at: Timestamp,
    },
    /// `metadef.association_added` (creates the resource type when new)
    AssociationAdded {
        namespace: String,
        association: AssociationSpec,
        at: Timestamp,
    },
    /// `metadef.association_removed`
    AssociationRemoved {
        namespace: String,
        name: String,
        at: Timestamp,
    },
}

impl MetadefEvent {
    /// Stable type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            MetadefEvent::NamespaceCreated { .. } => "metadef.namespace_created",
            MetadefEvent::NamespaceUpdated { .. } => "metadef.namespace_updated",
            MetadefEvent::NamespaceDeleted { .. } => "metadef.namespace_deleted",
            MetadefEvent::ObjectPut { .. } => "metadef.object_put",
            MetadefEvent::ObjectDeleted { .. } => "metadef.object_deleted",
            MetadefEvent::PropertyPut { .. } => "metadef.property_put",
            MetadefEvent::PropertyDeleted { .. } => "metadef.property_deleted",
            MetadefEvent::TagsReplaced { .. } => "metadef.tags_replaced",
            MetadefEvent::TagPut { .. } => "metadef.tag_put",
            MetadefEvent::TagDeleted { .. } => "metadef.tag_deleted",
            MetadefEvent::AssociationAdded { .. } => "metadef.association_added",
            MetadefEvent::AssociationRemoved { .. } => "metadef.association_removed",
        }
    }
}

fn ns_not_found(name: &str) -> DomainError {
    DomainError::Missing(format!(
        "Metadata definition namespace={name} was not found."
    ))
}

fn check_name(what: &str, name: &str) -> Result<(), DomainError> {
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(DomainError::BadRequest(format!(
            "Invalid {what} name {name:?}: 1 to 80 printable characters."
        )));
    }
    Ok(())
}

fn check_fields(f: &NamespaceFields) -> Result<(), DomainError> {
    check_name("namespace", &f.namespace)?;
    if f.owner.chars().count() > 255 {
        return Err(DomainError::BadRequest(
            "Invalid value for 'owner': at most 255 characters.".into(),
        ));
    }
    Ok(())
}

fn no_dup_tags<'a>(
    namespace: &str,
    tags: impl IntoIterator<Item = &'a String>,
) -> Result<(), DomainError> {
    let mut seen = std::collections::BTreeSet::new();
    for t in tags {
        check_name("tag", t)?;
        if !seen.insert(t.to_lowercase()) {
            return Err(dup_tag(namespace, t));
        }
    }
    Ok(())
}

fn dup_tag(namespace: &str, t: &str) -> DomainError {
    DomainError::Conflict(format!(
        "A metadata tag with name={t} already exists in namespace={namespace}. (Please note that metadata tag names are case insensitive)."
    ))
}

fn protected(kind: &str, name: &str) -> DomainError {
    DomainError::Forbidden(format!(
        "Metadata definition {kind} {name} is protected and cannot be deleted."
    ))
}

/// Decides a metadefs command on `set` for the caller of `ctx`.
pub fn decide(
    set: &MetadefSet,
    cmd: MetadefCommand,
    ctx: &Ctx,
) -> Result<Vec<MetadefEvent>, DomainError> {
    let at = ctx.now;
    let ev = match cmd {
        MetadefCommand::CreateNamespace(new) => {
            check_fields(&new.fields)?;
            let name = new.fields.namespace.clone();
            if set.namespaces.contains_key(&name) {
                return Err(DomainError::Conflict(format!(
                    "The metadata definition namespace={name} already exists."
                )));
            }
            let mut seen = std::collections::BTreeSet::new();
            for a in &new.associations {
                check_name("resource type", &a.name)?;
                if !seen.insert(&a.name) {
                    return Err(dup_association(&a.name, &name));
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            for o in &new.objects {
                check_name("object", &o.name)?;
                if !seen.insert(&o.name) {
                    return Err(dup_object(&o.name, &name));
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            for (p, _) in &new.properties {
                check_name("property", p)?;
                if !seen.insert(p) {
                    return Err(dup_property(p, &name));
                }
            }
            no_dup_tags(&name, &new.tags)?;
            MetadefEvent::NamespaceCreated { new, at }
        }
        MetadefCommand::UpdateNamespace(name, fields) => {
            set.visible(&name, ctx)?;
            check_fields(&fields)?;
            if fields.namespace != name && set.namespaces.contains_key(&fields.namespace) {
                return Err(DomainError::Conflict(format!(
                    "The metadata definition namespace={} already exists.",
                    fields.namespace
                )));
            }
            MetadefEvent::NamespaceUpdated {
                namespace: name,
                fields,
                at,
            }
        }
        MetadefCommand::DeleteNamespace(name) => {
            let ns = set.visible(&name, ctx)?;
            if ns.fields.protected {
                return Err(protected("namespace", &name));
            }
            MetadefEvent::NamespaceDeleted {
                namespace: name,
                at,
            }
        }
        MetadefCommand::PutObject {
            namespace,
            replaces,
            object,
        } => {
            let ns = set.visible(&namespace, ctx)?;
            check_name("object", &object.name)?;
            if let Some(old) = &replaces {
                if !ns.objects.contains_key(old) {
                    return Err(object_not_found(old, &namespace));
                }
            }
            if replaces.as_deref() != Some(object.name.as_str())
                && ns.objects.contains_key(&object.name)
            {
                return Err(dup_object(&object.name, &namespace));
            }
            MetadefEvent::ObjectPut {
                namespace,
                replaces,
                object,
                at,
            }
        }
        MetadefCommand::DeleteObject { namespace, name } => {
            let ns = set.visible(&namespace, ctx)?;
            if !ns.objects.contains_key(&name) {
                return Err(object_not_found(&name, &namespace));
            }
            if ns.fields.protected {
                return Err(protected("object", &name));
            }
            MetadefEvent::ObjectDeleted {
                namespace,
                name,
                at,
            }
        }
        MetadefCommand::PutProperty {
            namespace,
            replaces,
            name,
            definition,
        } => {
            let ns = set.visible(&namespace, ctx)?;
            check_name("property", &name)?;
            if let Some(old) = &replaces {
                if !ns.properties.contains_key(old) {
                    return Err(property_not_found(old, &namespace));
                }
            }
            if replaces.as_deref() != Some(name.as_str()) && ns.properties.contains_key(&name) {
                return Err(dup_property(&name, &namespace));
            }
            MetadefEvent::PropertyPut {
                namespace,
                replaces,
                name,
                definition,
                at,
            }
        }
        MetadefCommand::DeleteProperty { namespace, name } => {
            let ns = set.visible(&namespace, ctx)?;
            if !ns.properties.contains_key(&name) {
                return Err(property_not_found(&name, &namespace));
            }
            if ns.fields.protected {
                return Err(protected("property", &name));
            }
            MetadefEvent::PropertyDeleted {
                namespace,
                name,
                at,
            }
        }
        MetadefCommand::ReplaceTags { namespace, tags } => {
            let ns = set.visible(&namespace, ctx)?;
            no_dup_tags(&namespace, &tags)?;
            if tags.is_empty() && ns.fields.protected && !ns.tags.is_empty() {
                let first = ns.tags.keys().next().cloned().unwrap_or_default();
                return Err(protected("tag", &first));
            }
            MetadefEvent::TagsReplaced {
                namespace,
                tags,
                at,
            }
        }
        MetadefCommand::PutTag {
            namespace,
            replaces,
            name,
        } => {
            let ns = set.visible(&namespace, ctx)?;
            check_name("tag", &name)?;
            if let Some(old) = &replaces {
                if !ns.tags.contains_key(old) {
                    return Err(tag_not_found(old, &namespace));
                }
            }
            let lower = name.to_lowercase();
            if ns
                .tags
                .keys()
                .any(|t| t.to_lowercase() == lower && replaces.as_deref() != Some(t.as_str()))
            {
                return Err(dup_tag(&namespace, &name));
            }
            MetadefEvent::TagPut {
                namespace,
                replaces,
                name,
                at,
            }
        }
        MetadefCommand::DeleteTag { namespace, name } => {
            let ns = set.visible(&namespace, ctx)?;
            if !ns.tags.contains_key(&name) {
                return Err(tag_not_found(&name, &namespace));
            }
            if ns.fields.protected {
                return Err(protected("tag", &name));
            }
            MetadefEvent::TagDeleted {
                namespace,
                name,
                at,
            }
        }
        MetadefCommand::AddAssociation {
            namespace,
            association,
        } => {
            let ns = set.visible(&namespace, ctx)?;
            check_name("resource type", &association.name)?;
            if ns.associations.contains_key(&association.name) {
                return Err(dup_association(&association.name, &namespace));
            }
            MetadefEvent::AssociationAdded {
                namespace,
                association,
                at,
            }
        }
        MetadefCommand::RemoveAssociation { namespace, name } => {
            let ns = set.visible(&namespace, ctx)?;
            if !ns.associations.contains_key(&name) {
                return Err(DomainError::Missing(format!(
                    "The metadata definition resource-type association of resource-type={name} to namespace={namespace}, was not found."
                )));
            }
            if ns.fields.protected {
                return Err(DomainError::Forbidden(format!(
                    "Metadata definition resource-type-association {name} is protected and cannot be deleted."
                )));
            }
            MetadefEvent::AssociationRemoved {
                namespace,
                name,
                at,
            }
        }
    };
    Ok(vec![ev])
}

fn dup_association(rt: &str, ns: &str) -> DomainError {
    DomainError::Conflict(format!(
        "The metadata definition resource-type association of resource-type={rt} to namespace={ns}, already exists."
    ))
}

fn dup_object(name: &str, ns: &str) -> DomainError {
    DomainError::Conflict(format!(
        "A metadata definition object with name={name} already exists in namespace={ns}."
    ))
}

fn dup_property(name: &str, ns: &str) -> DomainError {
    DomainError::Conflict(format!(
        "A metadata definition property with name={name} already exists in namespace={ns}."
    ))
}

fn object_not_found(name: &str, ns: &str) -> DomainError {
    DomainError::Missing(format!(
        "The metadata definition object with name={name} was not found in namespace={ns}."
    ))
}

fn property_not_found(name: &str, ns: &str) -> DomainError {
    DomainError::Missing(format!(
        "The metadata definition property with name={name} was not found in namespace={ns}."
    ))
}

fn tag_not_found(name: &str, ns: &str) -> DomainError {
    DomainError::Missing(format!(
        "The metadata definition tag with name={name} was not found in namespace={ns}."
    ))
}

fn stamped<T>(item: T, at: Timestamp) -> Stamped<T> {
    Stamped {
        item,
        created_at: at,
        updated_at: at,
    }
}

/// Replaces (or inserts) `key` -> `item` in `map`, keeping the created time of
/// `replaces` when there was one.
fn put<T>(
    map: &mut BTreeMap<String, Stamped<T>>,
    replaces: &Option<String>,
    key: String,
    item: T,
    at: Timestamp,
) {
    let created = replaces
        .as_ref()
        .and_then(|old| map.remove(old))
        .map_or(at, |s| s.created_at);
    map.insert(
        key,
        Stamped {
            item,
            created_at: created,
            updated_at: at,
        },
    );
}

/// Applies an event. Total: events naming a missing namespace change nothing.
pub fn evolve(set: &mut MetadefSet, ev: &MetadefEvent) {
    match ev {
        MetadefEvent::NamespaceCreated { new, at } => {
            let at = *at;
            for a in &new.associations {
                note_resource_type(set, &a.name, at);
            }
            let ns = Namespace {
                fields: new.fields.clone(),
                created_at: at,
                updated_at: at,
                associations: new
                    .associations
                    .iter()
                    .map(|a| (a.name.clone(), stamped(a.clone(), at)))
                    .collect(),
                objects: new
                    .objects
                    .iter()
                    .map(|o| (o.name.clone(), stamped(o.clone(), at)))
                    .collect(),
                properties: new
                    .properties
                    .iter()
                    .map(|(n, d)| (n.clone(), stamped(d.clone(), at)))
                    .collect(),
                tags: new
                    .tags
                    .iter()
                    .map(|t| (t.clone(), stamped(t.clone(), at)))
                    .collect(),
            };
            set.namespaces.insert(new.fields.namespace.clone(), ns);
        }
        MetadefEvent::NamespaceUpdated {
            namespace,
            fields,
            at,
        } => {
            if let Some(mut ns) = set.namespaces.remove(namespace) {
                ns.fields = fields.clone();
                ns.updated_at = *at;
                set.namespaces.insert(fields.namespace.clone(), ns);
            }
        }
        MetadefEvent::NamespaceDeleted { namespace, .. } => {
            set.namespaces.remove(namespace);
        }
        MetadefEvent::ObjectPut {
            namespace,
            replaces,
            object,
            at,
        } => {
            if let Some(ns) = set.namespaces.get_mut(namespace) {
                put(
                    &mut ns.objects,
                    replaces,
                    object.name.clone(),
                    object.clone(),
                    *at,
                );
            }
        }
        MetadefEvent::ObjectDeleted {
            namespace, name, ..
        } => {
            if let Some(ns) = set.namespaces.get_mut(namespace) {
                ns.objects.remove(name);
            }
        }
        MetadefEvent::PropertyPut {
            namespace,
            replaces,
            name,
            definition,
            at,
        } => {
            if let Some(ns) = set.namespaces.get_mut(namespace) {
                put(
                    &mut ns.properties,
                    replaces,
                    name.clone(),
                    definition.clone(),
                    *at,
                );
            }
        }
        MetadefEvent::PropertyDeleted {
            namespace, name, ..
        } => {
            if let Some(ns) = set.namespaces.get_mut(namespace) {
                ns.properties.remove(name);
            }
        }
        MetadefEvent::TagsReplaced {
            namespace,
            tags,
            at,
        } => {
            if let Some(ns) = set.namespaces.get_mut(namespace) {
                ns.tags = tags
                    .iter()
                    .map(|t| (t.clone(), stamped(t.clone(), *at)))
                    .collect();
            }
        }
        MetadefEvent::TagPut {
            namespace,
            replaces,
            name,
            at,
        } => {
            if let Some(ns) = set.namespaces.get_mut(namespace) {
                put(&mut ns.tags, replaces, name.clone(), name.clone(), *at);
            }
        }
        MetadefEvent::TagDeleted {
            namespace, name, ..
        } => {
            if let Some(ns) = set.namespaces.get_mut(namespace) {
                ns.tags.remove(name);
            }
        }
        MetadefEvent::AssociationAdded {
            namespace,
            association,
            at,
        } => {
            if set.namespaces.contains_key(namespace) {
                note_resource_type(set, &association.name, *at);
            }
            if let Some(ns) = set.namespaces.get_mut(namespace) {
                ns.associations
                    .insert(association.name.clone(), stamped(association.clone(), *at));
            }
        }
        MetadefEvent::AssociationRemoved {
            namespace, name, ..
        } => {
            if let Some(ns) = set.namespaces.get_mut(namespace) {
                ns.associations.remove(name);
            }
        }
    }
}

fn note_resource_type(set: &mut MetadefSet, name: &str, at: Timestamp) {
    if !SEEDED_RESOURCE_TYPES.contains(&name) {
        set.resource_types.entry(name.to_string()).or_insert(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            now: Timestamp(1),
            is_admin: true,
            user_id: "u".into(),
            project_id: "p".into(),
            op_id: uuid::Uuid::nil(),
        }
    }

    fn fields(name: &str, protected: bool) -> NamespaceFields {
        NamespaceFields {
            namespace: name.into(),
            display_name: None,
            description: None,
            visibility: NsVisibility::Private,
            protected,
            owner: "p".into(),
        }
    }

    fn run(set: &mut MetadefSet, cmd: MetadefCommand) -> Result<(), DomainError> {
        for ev in decide(set, cmd, &ctx())? {
            evolve(set, &ev);
        }
        Ok(())
    }

    #[test]
    fn names_are_unique_and_protection_holds() {
        let mut set = MetadefSet::default();
        let new = |n: &str, p| {
            MetadefCommand::CreateNamespace(NewNamespace {
                fields: fields(n, p),
                associations: vec![],
                objects: vec![],
                properties: vec![],
                tags: vec!["a".into()],
            })
        };
        run(&mut set, new("ns", true)).unwrap();
        assert!(matches!(
            run(&mut set, new("ns", false)),
            Err(DomainError::Conflict(_))
        ));
        assert!(matches!(
            run(&mut set, MetadefCommand::DeleteNamespace("ns".into())),
            Err(DomainError::Forbidden(_))
        ));
        let dup = MetadefCommand::PutTag {
            namespace: "ns".into(),
            replaces: None,
            name: "A".into(),
        };
        assert!(matches!(run(&mut set, dup), Err(DomainError::Conflict(_))));
        run(
            &mut set,
            MetadefCommand::UpdateNamespace("ns".into(), fields("ns2", false)),
        )
        .unwrap();
        assert!(set.namespaces.contains_key("ns2") && !set.namespaces.contains_key("ns"));
        assert_eq!(set.namespaces["ns2"].tags.len(), 1);
        run(&mut set, MetadefCommand::DeleteNamespace("ns2".into())).unwrap();
        assert!(set.namespaces.is_empty());
    }
}
