//! Who the compute and image APIs' callers are: the authentication mode, the three
//! roles (ordered: admin implies member implies reader, Keystone's default implied
//! roles) and the rules a route may require, and the development `noauth` tokens.
//!
//! Invariants:
//! - A role is one of the three names; unknown role names grant nothing.
//! - A noauth token names a user and a project (1-255 characters, no `:`, whitespace or
//!   control characters) and optionally one of the three roles; anything else is not a
//!   token.

use std::sync::Arc;

/// A request as application credential access rules see it (validate with
/// `identity::Tokens::validate_request`, the one place they are enforced).
pub use identity::Target;

/// How callers authenticate.
#[derive(Debug, Clone, Default)]
pub enum AuthMode {
    /// Development mode: `X-Auth-Token: <user>:<project>[:<role>]`; without a role part
    /// user `admin` is admin and anyone else member.
    #[default]
    NoAuth,
    /// Keystone tokens issued by the identity service, validated in-process against
    /// the same signing key and the identity view of this process's world (user,
    /// project and roles; the `admin` role is admin). A missing or invalid token is a
    /// 401 `{"error": {"code": 401, "title": "Unauthorized", ...}}`.
    Keystone(Arc<identity::Tokens>),
}

/// A caller's role on its project. Ordered: each role implies the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Read-only access to the project's resources.
    Reader,
    /// Reader plus creating, changing and deleting the project's resources.
    Member,
    /// Member plus the project-level operations Nova gives its project-manager persona
    /// (2024.2+ `PROJECT_MANAGER_OR_ADMIN`: moving the project's servers, listing
    /// their migrations).
    Manager,
    /// Everything, on every project.
    Admin,
}

impl Role {
    /// All roles, lowest first.
    pub const ALL: [Role; 4] = [Role::Reader, Role::Member, Role::Manager, Role::Admin];

    /// The role's name in Keystone and in noauth tokens.
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Member => "member",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    /// The role named `name`, if it is one of the four.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The highest role among `names` (unknown names are ignored; Keystone's default
    /// implications make admin imply manager, manager member, member reader).
    pub fn highest<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Role> {
        names.into_iter().filter_map(Role::from_name).max()
    }
}

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// No authentication (version documents).
    Public,
    /// Any authenticated caller, whatever its roles (Nova: no policy check).
    Authenticated,
    /// `base.PROJECT_READER_OR_ADMIN`: reader (or higher) on the project.
    ProjectReader,
    /// `base.PROJECT_MEMBER_OR_ADMIN`: member (or higher) on the project.
    ProjectMember,
    /// `base.PROJECT_MANAGER_OR_ADMIN`: manager (or admin) on the project.
    ProjectManager,
    /// `base.ADMIN`: the admin role.
    Admin,
}

impl Rule {
    /// Whether a caller with `role` (None: no known role) passes the rule.
    pub fn allows(self, role: Option<Role>) -> bool {
        match self {
            Rule::Public | Rule::Authenticated => true,
            Rule::ProjectReader => role >= Some(Role::Reader),
            Rule::ProjectMember => role >= Some(Role::Member),
            Rule::ProjectManager => role >= Some(Role::Manager),
            Rule::Admin => role == Some(Role::Admin),
        }
    }

    /// Short name used in docs/POLICY.md.
    pub fn label(self) -> &'static str {
        match self {
            Rule::Public => "public",
            Rule::Authenticated => "any authenticated",
            Rule::ProjectReader => "project reader or admin",
            Rule::ProjectMember => "project member or admin",
            Rule::ProjectManager => "project manager or admin",
            Rule::Admin => "admin",
        }
    }
}

/// Parses a noauth token `<user>:<project>`.
pub fn parse_noauth_token(token: &str) -> Option<(String, String)> {
    parse_noauth(token).map(|(u, p, _)| (u, p))
}

/// Parses a noauth token `<user>:<project>[:<role>]` with its role: the named one, else
/// admin for user `admin` and member for anyone else.
pub fn parse_noauth(token: &str) -> Option<(String, String, Role)> {
    let (user, rest) = token.split_once(':')?;
    let (project, role) = match rest.split_once(':') {
        Some((p, r)) => (p, Role::from_name(r)?),
        None if user == "admin" => (rest, Role::Admin),
        None => (rest, Role::Member),
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 255
            && !s
                .chars()
                .any(|c| c.is_control() || c == ':' || c.is_whitespace())
    };
    (ok(user) && ok(project)).then(|| (user.to_string(), project.to_string(), role))
}

#[cfg(test)]
mod role_tests {
    use super::Role;

    #[test]
    fn manager_implies_member_and_unknown_roles_count_for_nothing() {
        assert_eq!(Role::highest(["manager"]), Some(Role::Manager));
        assert_eq!(Role::highest(["reader", "manager"]), Some(Role::Manager));
        assert!(Role::Manager > Role::Member && Role::Manager < Role::Admin);
        assert_eq!(Role::highest(["manager", "admin"]), Some(Role::Admin));
        assert_eq!(Role::highest(["auditor"]), None);
    }
}
