//! Server tags (Nova 2.26, `/servers/{id}/tags`): what may change them and how.
//!
//! Tags are not part of [`Instance`] (its shape is frozen in `instance.placed`): they
//! are folded from `instance.tags_set` into [`super::ServerExtras::tags`], and
//! [`decide`] is given them beside the instance.
//!
//! Invariants:
//! - The checks run in Nova's order (nova/api/openstack/compute/server_tags.py): the
//!   vm_state ([`TAG_VM_STATES`], 409), then the tag's validity (400), then the count
//!   limit (400), then existence (adding a present tag changes nothing; deleting an
//!   absent one is a 404).
//! - `instance.tags_set` always carries the whole resulting set, at most [`MAX_TAGS`]
//!   valid tags.

use std::collections::BTreeSet;

use super::rules::TAG_VM_STATES;
use super::{Instance, InstanceEvent};
use crate::{Ctx, DomainError};

/// Nova's per-server limit (`nova.objects.instance.MAX_TAG_COUNT`).
pub const MAX_TAGS: usize = 50;

/// Nova's tag length limit (`nova.objects.tag.MAX_TAG_LENGTH`).
pub const MAX_TAG_LENGTH: usize = 60;

/// A change of a server's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagCommand {
    /// PUT /servers/{id}/tags/{tag}
    Add(String),
    /// PUT /servers/{id}/tags
    Replace(BTreeSet<String>),
    /// DELETE /servers/{id}/tags/{tag}
    Remove(String),
    /// DELETE /servers/{id}/tags
    Clear,
}

impl TagCommand {
    /// The name in Nova's 409 (`Cannot 'update tag' instance ...`).
    pub fn api_name(&self) -> &'static str {
        match self {
            TagCommand::Add(_) => "update tag",
            TagCommand::Replace(_) => "update tags",
            TagCommand::Remove(_) => "delete tag",
            TagCommand::Clear => "delete tags",
        }
    }
}

/// Why `tag` is not a valid tag (`parameter_types.tag`: a string of 1 to 60
/// characters without `/` or `,`), in jsonschema's words; None when it is valid.
pub fn tag_error(tag: &str) -> Option<String> {
    let n = tag.chars().count();
    if n == 0 {
        Some("'' is too short".into())
    } else if n > MAX_TAG_LENGTH {
        Some(format!("'{tag}' is too long"))
    } else if tag.contains(['/', ',']) {
        Some(format!("'{tag}' does not match '^[^,/]*$'"))
    } else {
        None
    }
}

/// Nova's 400 for an invalid tag in the URL.
fn invalid_tag(tag: &str, why: &str) -> DomainError {
    DomainError::BadRequest(format!(
        "Tag '{tag}' is invalid. It must be a non empty string without characters '/' and ','. Validation error message: {why}"
    ))
}

/// Decides a tag change of the instance `state` whose tags are `tags`.
pub fn decide(
    state: Option<&Instance>,
    tags: &BTreeSet<String>,
    cmd: TagCommand,
    ctx: &Ctx,
) -> Result<Vec<InstanceEvent>, DomainError> {
    let Some(i) = state.filter(|i| !i.deleted) else {
        return Err(DomainError::NotFound {
            kind: "Instance",
            id: state.map(|i| i.id().to_string()).unwrap_or_default(),
        });
    };
    if !TAG_VM_STATES.contains(&i.vm_state) {
        return Err(DomainError::InvalidState {
            action: cmd.api_name().into(),
            id: i.id().to_string(),
            attr: "vm_state".into(),
            state: i.vm_state.as_str().into(),
        });
    }
    let set = |tags: BTreeSet<String>| vec![InstanceEvent::TagsSet { tags, at: ctx.now }];
    match cmd {
        TagCommand::Add(tag) => {
            if let Some(why) = tag_error(&tag) {
                return Err(invalid_tag(&tag, &why));
            }
            if tags.len() >= MAX_TAGS {
                return Err(DomainError::BadRequest(format!(
                    "The number of tags exceeded the per-server limit {MAX_TAGS}"
                )));
            }
            if tags.contains(&tag) {
                return Ok(vec![]);
            }
            let mut next = tags.clone();
            next.insert(tag);
            Ok(set(next))
        }
        TagCommand::Replace(next) => {
            if let Some((tag, why)) = next
                .iter()
                .find_map(|t| tag_error(t).map(|why| (t.clone(), why)))
            {
                return Err(invalid_tag(&tag, &why));
            }
            if next.len() > MAX_TAGS {
                return Err(DomainError::BadRequest(format!(
                    "The number of tags exceeded the per-server limit {MAX_TAGS}"
                )));
            }
            Ok(set(next))
        }
        TagCommand::Remove(tag) => {
            if !tags.contains(&tag) {
                // Nova's InstanceTagNotFound.
                return Err(DomainError::Missing(format!(
                    "Instance {} has no tag '{tag}'",
                    i.id()
                )));
            }
            let mut next = tags.clone();
            next.remove(&tag);
            Ok(set(next))
        }
        TagCommand::Clear => Ok(set(BTreeSet::new())),
    }
}
