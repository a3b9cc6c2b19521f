//! Neutron's `standard-attr-tag` (`/v2.0/<resources>/{id}/tags`): what a tag request
//! makes of a resource's tags, the same for every kind of resource (networks, subnets,
//! ports, subnet pools, routers, floating IPs, security groups).
//!
//! Invariants:
//! - A resource's tags are unique and sorted (the order Stratus shows them in).
//! - A request that changes nothing (a tag already there, the same set again) yields
//!   no new tags, so nothing is appended and the revision does not move, as in
//!   Neutron where no tag row changes.
//! - The count limit is checked as Neutron's `validate_tags_limit` does: on the body of
//!   a replace or an add-many, on the current tags plus the one of an add-one.
//!
//! The text of each tag (a string of at most [`MAX_TAG_LEN`] characters) is the HTTP
//! layer's to check: it reads the body.

use super::NetError;

/// Longest tag (Neutron's `MAX_TAG_LEN`).
pub const MAX_TAG_LEN: usize = 255;

/// Most tags per request or resource (Neutron's `MAX_TAGS_COUNT`).
pub const MAX_TAGS_COUNT: usize = 50;

/// One tag request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagOp {
    /// `PUT .../tags/{tag}`: adds one tag.
    Add(String),
    /// `POST .../tags`: adds those not there yet.
    AddMany(Vec<String>),
    /// `PUT .../tags`: replaces all.
    Replace(Vec<String>),
    /// `DELETE .../tags/{tag}`: removes one (TagNotFound when absent).
    Remove(String),
    /// `DELETE .../tags`: removes all.
    Clear,
}

/// `TagNotFound` (404).
pub fn tag_not_found(tag: &str) -> NetError {
    NetError::not_found_message("TagNotFound", format!("Tag {tag} could not be found."))
}

fn limit(collection: &str, n: usize) -> Result<(), NetError> {
    if n > MAX_TAGS_COUNT {
        return Err(NetError::bad(
            "BadRequest",
            format!(
                "Bad {collection} request: The number of tags exceed the per-resource limit of {MAX_TAGS_COUNT}."
            ),
        ));
    }
    Ok(())
}

/// The tags `op` leaves on a resource tagged `current` (`collection`: Neutron's
/// resource name in messages, e.g. `security_groups`); None when nothing changes.
pub fn apply(
    current: &[String],
    op: &TagOp,
    collection: &str,
) -> Result<Option<Vec<String>>, NetError> {
    let mut new: Vec<String> = current.to_vec();
    match op {
        TagOp::Add(t) => {
            let mut all = new.clone();
            all.push(t.clone());
            all.sort();
            all.dedup();
            limit(collection, all.len())?;
            new = all;
        }
        TagOp::AddMany(ts) => {
            let mut body = ts.clone();
            body.sort();
            body.dedup();
            limit(collection, body.len())?;
            new.extend(body);
        }
        TagOp::Replace(ts) => {
            let mut body = ts.clone();
            body.sort();
            body.dedup();
            limit(collection, body.len())?;
            new = body;
        }
        TagOp::Remove(t) => {
            if !new.contains(t) {
                return Err(tag_not_found(t));
            }
            new.retain(|x| x != t);
        }
        TagOp::Clear => new.clear(),
    }
    new.sort();
    new.dedup();
    let mut old = current.to_vec();
    old.sort();
    old.dedup();
    Ok((new != old).then_some(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ops_keep_tags_sorted_and_unique() {
        let cur = v(&["b", "a"]);
        assert_eq!(
            apply(&cur, &TagOp::Add("c".into()), "networks").unwrap(),
            Some(v(&["a", "b", "c"]))
        );
        assert_eq!(
            apply(&cur, &TagOp::Add("a".into()), "networks").unwrap(),
            None
        );
        assert_eq!(
            apply(&cur, &TagOp::AddMany(v(&["z", "a"])), "networks").unwrap(),
            Some(v(&["a", "b", "z"]))
        );
        assert_eq!(
            apply(&cur, &TagOp::Replace(v(&["a", "b"])), "networks").unwrap(),
            None
        );
        assert_eq!(
            apply(&cur, &TagOp::Remove("a".into()), "networks").unwrap(),
            Some(v(&["b"]))
        );
        assert_eq!(apply(&[], &TagOp::Clear, "networks").unwrap(), None);
    }

    #[test]
    fn refusals_name_the_tag_and_the_limit() {
        let e = apply(&[], &TagOp::Remove("x".into()), "ports").unwrap_err();
        assert_eq!(e.to_string(), "Tag x could not be found.");
        let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
        let e = apply(&[], &TagOp::Replace(many.clone()), "routers").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Bad routers request: The number of tags exceed the per-resource limit of 50."
        );
        let fifty = &many[..50];
        assert!(apply(fifty, &TagOp::Add("new".into()), "routers").is_err());
        assert!(apply(fifty, &TagOp::Add("t0".into()), "routers").is_ok());
    }
}
