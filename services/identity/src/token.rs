//! Signed tokens.
//!
//! A token is `s1.<base64url(json claims)>.<base64url(HMAC-SHA256(key, "s1." + claims))>`.
//! The claims hold the user, the project, the role ids at issue, issue and expiry times,
//! the user's credential revision, an audit id and the auth methods.
//!
//! Invariants:
//! - The signing key is 32 random bytes, generated once into `<data-dir>/token.key`
//!   (mode 0600) or read from a shared `--token-key-file`; processes that validate
//!   each other's tokens must share it.
//! - [`Tokens::validate`] accepts a token only if its MAC verifies (constant time), it
//!   has not expired, its user exists, is enabled and is at the same credential
//!   revision (a password change or a disable invalidates earlier tokens), and its
//!   project exists, is enabled and the user still has a role on it. The roles of a
//!   valid token are the user's current roles on the project.
//! - A token whose audit id its user's state lists as revoked is refused
//!   (`DELETE /v3/auth/tokens` appends the revocation; every process folds it).
//! - A token issued for an application credential is valid only while the credential
//!   exists and has not expired; its roles are the credential's roles the user still
//!   has on the credential's project, and it never outlives the credential.

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use domain::identity::{AccessRule, AppCred, Project, Role, User};
use domain::{ProjectId, Timestamp, UserId};
use hmac::{Hmac, Mac};
use projections::IdentityViews;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::IdentityError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const PREFIX: &str = "s1.";

/// The HMAC key tokens are signed with.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        use argon2::password_hash::rand_core::{OsRng, RngCore};
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        TokenKey(k)
    }

    /// Reads the key at `path` (64 hex characters), or creates it there with mode 0600
    /// when the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(text.trim()).ok_or_else(|| {
                IdentityError::Internal(format!(
                    "{}: not a token key (64 hex characters)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A missing directory (e.g. /etc/stratus on a new machine) is created
                // for the key alone: owner only, like the key.
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    if !dir.exists() {
                        let mut b = std::fs::DirBuilder::new();
                        b.recursive(true);
                        #[cfg(unix)]
                        {
                            use std::os::unix::fs::DirBuilderExt;
                            b.mode(0o700);
                        }
                        b.create(dir).map_err(|e| {
                            IdentityError::Internal(format!(
                                "cannot create the directory {} for the token key: {e}",
                                dir.display()
                            ))
                        })?;
                    }
                }
                // Written whole to a private temporary file, then linked into place:
                // the key appears complete or not at all, so a process starting at the
                // same moment never reads a half-written key, and a link that finds a
                // key already there (another process won) uses that one.
                let key = Self::generate();
                let err =
                    |e: std::io::Error| IdentityError::Internal(format!("{}: {e}", path.display()));
                let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4().simple()));
                let _ = std::fs::remove_file(&tmp);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let written = opts.open(&tmp).and_then(|mut f| {
                    writeln!(f, "{}", hex(&key.0))?;
                    f.sync_all()
                });
                let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok(key),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(err(e)),
                }
            }
            Err(e) => Err(IdentityError::Internal(format!("{}: {e}", path.display()))),
        }
    }

    /// A key from its 64 hex characters (the key file's content).
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(TokenKey(k))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub user: String,
    /// Project id.
    pub project: String,
    /// Role ids at issue.
    pub roles: Vec<String>,
    /// Issue time (µs since the epoch).
    pub issued_at: i64,
    /// Expiry time (µs since the epoch).
    pub expires_at: i64,
    /// The user's credential revision at issue.
    pub revision: u32,
    /// Audit id (Keystone's `audit_ids[0]`).
    pub audit_id: String,
    /// Auth methods (`password` or `application_credential`).
    pub methods: Vec<String>,
    /// The application credential the token was issued for (absent in password
    /// tokens, also in those issued before the field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_cred: Option<String>,
}

/// A validated token: its claims and the current user, project and roles.
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    /// The claims.
    pub claims: Claims,
    /// The user now.
    pub user: User,
    /// The project now.
    pub project: Project,
    /// The user's roles on the project now (for an application credential token,
    /// those of the credential's roles).
    pub roles: Vec<Role>,
    /// The application credential of the token, if it was issued for one.
    pub app_cred: Option<AppCred>,
}

impl Auth {
    /// Whether the token carries the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r.name.as_str() == "admin")
    }

    /// Whether the token may manage application credentials: a password token, or one
    /// of an unrestricted application credential.
    pub fn may_manage_app_creds(&self) -> bool {
        self.app_cred.as_ref().is_none_or(|c| c.unrestricted)
    }

    /// Role names.
    pub fn role_names(&self) -> Vec<String> {
        self.roles.iter().map(|r| r.name.to_string()).collect()
    }

    /// The access rules the token is limited to: those of its application credential
    /// (`None`: not limited — a password token, or a credential created without rules).
    pub fn access_rules(&self) -> Option<Vec<&AccessRule>> {
        let cred = self.app_cred.as_ref()?;
        let ids = self.user.app_cred_rules.get(&cred.id)?;
        Some(
            ids.iter()
                .filter_map(|id| self.user.access_rules.get(id))
                .collect(),
        )
    }

    /// Whether the token may make `request` (keystonemiddleware's
    /// `validate_allowed_request`): always when it is not limited by access rules;
    /// otherwise only when one rule names the request's service type and method and
    /// its path pattern matches the request's path. Validating a token (`GET
    /// /v3/auth/tokens` on identity) is always allowed.
    pub fn allows(&self, request: &Target<'_>) -> bool {
        let Some(rules) = self.access_rules() else {
            return true;
        };
        if request.service == "identity"
            && request.method == "GET"
            && request.path.ends_with("/v3/auth/tokens")
        {
            return true;
        }
        rules.iter().any(|r| {
            r.method == request.method
                && r.service == request.service
                && path_matches(request.path, &r.path)
        })
    }
}

/// A request as access rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// The service type of the API serving it (`compute`, `image`, `identity`).
    pub service: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// The request's path (no query).
    pub path: &'a str,
}

/// One element of an access rule's path pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathToken {
    /// This character.
    Lit(char),
    /// `*` or `{name}`: one or more characters other than `/`.
    Segment,
    /// `**`: any characters, `/` included, possibly none.
    Any,
}

fn path_tokens(pattern: &str) -> Vec<PathToken> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                out.push(PathToken::Any);
                i += 2;
            }
            '*' => {
                out.push(PathToken::Segment);
                i += 1;
            }
            '{' => match chars[i..].iter().position(|c| *c == '}') {
                Some(n) => {
                    out.push(PathToken::Segment);
                    i += n + 1;
                }
                None => {
                    out.push(PathToken::Lit('{'));
                    i += 1;
                }
            },
            c => {
                out.push(PathToken::Lit(c));
                i += 1;
            }
        }
    }
    out
}

/// Whether `path` matches an access rule's path pattern, all of it (keystonemiddleware's
/// `_path_matches`: `*` and `{name}` are one path segment, `**` anything). Other
/// characters match only themselves (keystonemiddleware pastes them into a regular
/// expression, so there a `.` matches any character; here it is a dot). Linear in
/// `pattern` × `path` (dynamic programming, no backtracking), so no pattern of a rule
/// can make a request slow.
pub fn path_matches(path: &str, pattern: &str) -> bool {
    let p = path_tokens(pattern);
    let s: Vec<char> = path.chars().collect();
    let (np, ns) = (p.len(), s.len());
    // next[j]: tokens i+1.. match s[j..]; cur[j]: tokens i.. match s[j..].
    let mut next: Vec<bool> = (0..=ns).map(|j| j == ns).collect();
    for i in (0..np).rev() {
        let mut cur = vec![false; ns + 1];
        for j in (0..=ns).rev() {
            cur[j] = match p[i] {
                PathToken::Lit(c) => j < ns && s[j] == c && next[j + 1],
                PathToken::Segment => j < ns && s[j] != '/' && (next[j + 1] || cur[j + 1]),
                PathToken::Any => next[j] || (j < ns && cur[j + 1]),
            };
        }
        next = cur;
    }
    next[0]
}

/// Issues and validates tokens.
#[derive(Debug, Clone)]
pub struct Tokens {
    key: TokenKey,
    /// Lifetime of a token in seconds (3600 by default).
    pub expiration_secs: i64,
}

/// Why a token is not valid (all answered 401 / 404 without detail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Not a token of ours, or tampered with.
    Malformed,
    /// Past its expiry.
    Expired,
    /// User unknown, disabled, or credentials changed since issue; the token itself
    /// revoked; its application credential deleted or expired.
    Revoked,
    /// Project unknown or disabled, or no role on it any more.
    NoScope,
    /// Valid, but its application credential's access rules do not allow the request
    /// (keystonemiddleware answers it as an invalid token).
    NotAllowed,
}

impl Tokens {
    /// Tokens signed with `key`, living `expiration_secs`.
    pub fn new(key: TokenKey, expiration_secs: i64) -> Self {
        Tokens {
            key,
            expiration_secs,
        }
    }

    fn mac(&self, data: &[u8]) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key.0).expect("any key length");
        m.update(data);
        m
    }

    /// HMAC-SHA256 of `data` under the token key, separated by `purpose` so that a tag
    /// made for one use (e.g. the compute API's console tokens) is never a valid
    /// signature for another (a Keystone token's claims are signed with no purpose).
    pub fn tag(&self, purpose: &str, data: &[u8]) -> [u8; 32] {
        let mut m = self.mac(purpose.as_bytes());
        m.update(&[0]);
        m.update(data);
        m.finalize().into_bytes().into()
    }

    /// Signs claims into a token string.
    pub fn sign(&self, claims: &Claims) -> String {
        let body = B64.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signed = format!("{PREFIX}{body}");
        let tag = self.mac(signed.as_bytes()).finalize().into_bytes();
        format!("{signed}.{}", B64.encode(tag))
    }

    /// Verifies the signature and decodes the claims (no expiry or state check).
    pub fn decode(&self, token: &str) -> Option<Claims> {
        let (signed, tag) = token.rsplit_once('.')?;
        let body = signed.strip_prefix(PREFIX)?;
        let tag = B64.decode(tag).ok()?;
        self.mac(signed.as_bytes()).verify_slice(&tag).ok()?;
        serde_json::from_slice(&B64.decode(body).ok()?).ok()
    }

    /// Issues a token for `user` on `project` with `roles` at `now`.
    pub fn issue(
        &self,
        user: &User,
        project: &Project,
        roles: &[Role],
        now: Timestamp,
    ) -> (String, Claims) {
        let claims = Claims {
            user: user.id.to_string(),
            project: project.id.to_string(),
            roles: roles.iter().map(|r| r.id.to_string()).collect(),
            issued_at: now.0,
            expires_at: now.plus_secs(self.expiration_secs).0,
            revision: user.revision,
            audit_id: audit_id(),
            methods: vec!["password".into()],
            app_cred: None,
        };
        (self.sign(&claims), claims)
    }

    /// Issues a token for `user` on `project` from another token (the `token` method):
    /// it expires with the original, so rescoping never extends a token's life.
    pub fn issue_rescoped(
        &self,
        user: &User,
        project: &Project,
        roles: &[Role],
        now: Timestamp,
        expires_at: Timestamp,
    ) -> (String, Claims) {
        let (_, mut claims) = self.issue(user, project, roles, now);
        claims.expires_at = claims.expires_at.min(expires_at.0);
        claims.methods = vec!["token".into(), "password".into()];
        (self.sign(&claims), claims)
    }

    /// Issues a token for `user`'s application credential `cred` with `roles` at
    /// `now`: scoped to the credential's project, expiring no later than it.
    pub fn issue_for_app_cred(
        &self,
        user: &User,
        cred: &AppCred,
        roles: &[Role],
        now: Timestamp,
    ) -> (String, Claims) {
        let mut expires_at = now.plus_secs(self.expiration_secs).0;
        if let Some(e) = cred.expires_at {
            expires_at = expires_at.min(e.0);
        }
        let claims = Claims {
            user: user.id.to_string(),
            project: cred.project.to_string(),
            roles: roles.iter().map(|r| r.id.to_string()).collect(),
            issued_at: now.0,
            expires_at,
            revision: user.revision,
            audit_id: audit_id(),
            methods: vec!["application_credential".into()],
            app_cred: Some(cred.id.clone()),
        };
        (self.sign(&claims), claims)
    }

    /// Validates a token for one request of an API: [`Tokens::validate`], then the
    /// token's access rules ([`Auth::allows`]). Every service validates its callers'
    /// tokens here, so that access rules are enforced in one place.
    pub fn validate_request(
        &self,
        token: &str,
        views: &IdentityViews,
        now: Timestamp,
        request: &Target<'_>,
    ) -> Result<Auth, Invalid> {
        let auth = self.validate(token, views, now)?;
        if !auth.allows(request) {
            tracing::info!(
                service = request.service,
                method = request.method,
                path = request.path,
                "token refused by its access rules"
            );
            return Err(Invalid::NotAllowed);
        }
        Ok(auth)
    }

    /// Validates a token against the current identity state (see the module invariants).
    pub fn validate(
        &self,
        token: &str,
        views: &IdentityViews,
        now: Timestamp,
    ) -> Result<Auth, Invalid> {
        let claims = self.decode(token).ok_or(Invalid::Malformed)?;
        if now.0 >= claims.expires_at {
            return Err(Invalid::Expired);
        }
        let user = UserId::new(claims.user.clone())
            .ok()
            .and_then(|id| views.user(&id))
            .filter(|u| u.enabled && u.revision == claims.revision)
            .filter(|u| !u.revoked.contains_key(&claims.audit_id))
            .ok_or(Invalid::Revoked)?;
        let app_cred = match &claims.app_cred {
            None => None,
            Some(id) => Some(
                user.app_creds
                    .get(id)
                    .filter(|c| c.expires_at.is_none_or(|e| now < e))
                    .ok_or(Invalid::Revoked)?,
            ),
        };
        let project = ProjectId::new(claims.project.clone())
            .ok()
            .and_then(|id| views.project(&id))
            .filter(|p| p.enabled)
            .ok_or(Invalid::NoScope)?;
        let mut roles = current_roles(views, user, &project.id);
        if let Some(c) = app_cred {
            roles.retain(|r| c.roles.contains(&r.id));
        }
        if roles.is_empty() {
            return Err(Invalid::NoScope);
        }
        Ok(Auth {
            user: user.clone(),
            project: project.clone(),
            roles,
            claims,
            app_cred: app_cred.cloned(),
        })
    }
}

/// The roles (that still exist) a user has on a project.
pub fn current_roles(views: &IdentityViews, user: &User, project: &ProjectId) -> Vec<Role> {
    user.roles_on(project)
        .iter()
        .filter_map(|r| views.role(r).cloned())
        .collect()
}

fn audit_id() -> String {
    B64.encode(&uuid::Uuid::new_v4().as_bytes()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keystonemiddleware's wildcards: `*` and `{x}` one segment, `**` anything.
    #[test]
    fn path_patterns() {
        let yes = [
            ("/v2.1/servers/abc/ips", "/v2.1/servers/*/ips"),
            ("/v2.1/servers/abc/ips", "/v2.1/servers/{server_id}/ips"),
            ("/v2.1/servers/abc/ips", "/v2.1/**"),
            ("/v2.1/servers", "/v2.1/servers**"),
            ("/v2.1/servers/a/b", "/v2.1/**/b"),
            ("/v2/images", "/v2/images"),
        ];
        let no = [
            ("/v2.1/servers/abc/def/ips", "/v2.1/servers/*/ips"),
            ("/v2.1/servers//ips", "/v2.1/servers/*/ips"),
            ("/v2.1/servers/abc/ips/x", "/v2.1/servers/*/ips"),
            ("/v2.1/servers", "/v2.1/servers/*"),
            ("/v2/images/x", "/v2/images"),
            ("/v2x1/servers", "/v2.1/servers"),
        ];
        for (path, pat) in yes {
            assert!(path_matches(path, pat), "{path} ~ {pat}");
        }
        for (path, pat) in no {
            assert!(!path_matches(path, pat), "{path} !~ {pat}");
        }
        let long = "/a".repeat(4000);
        assert!(!path_matches(&long, &"**/".repeat(100)));
    }

    /// API processes starting together on one shared key file all end up with the
    /// same key, and none reads it half-written.
    #[test]
    fn concurrent_first_starts_agree_on_one_key() {
        for _ in 0..20 {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("token.key");
            let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| TokenKey::load_or_create(&path).unwrap().0))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(keys.iter().all(|k| *k == keys[0]));
            assert_eq!(
                std::fs::read_dir(tmp.path()).unwrap().count(),
                1,
                "temp files left"
            );
        }
    }

    /// `--token-key-file /etc/stratus/token.key` on a machine without /etc/stratus:
    /// the directory is made for the key, owner only, and the key is read back.
    #[test]
    fn a_missing_key_directory_is_created_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("etc/stratus/token.key");
        let key = TokenKey::load_or_create(&path).unwrap();
        assert_eq!(TokenKey::load_or_create(&path).unwrap().0, key.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(path.parent().unwrap()), 0o700);
            assert_eq!(mode(&path), 0o600);
        }
    }
}
