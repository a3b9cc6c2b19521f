//! First-start bootstrap of identity: roles `admin`, `member`, `reader`, project
//! `admin`, user `admin` with role `admin` on it, and `<data-dir>/openrc`.
//!
//! Invariants:
//! - Idempotent and safe with several API processes starting at once: every entity is
//!   looked up by name first and created through the name-index claim, so a second
//!   process (or a restart) finds it and creates nothing; a lost race (409) is treated
//!   as "exists".
//! - The admin password is set only when the admin user is created: from
//!   `--admin-password` / `STRATUS_ADMIN_PASSWORD`, else generated; it is written only
//!   to `openrc` (mode 0600), never logged. When the admin already exists, neither the
//!   password nor `openrc` are touched.

use std::path::{Path, PathBuf};

use domain::identity::{IdentityName, NameKind, RoleId};
use domain::{ProjectId, UserId};
use eventlog::EventLog;

use crate::commands::{self, Actor};
use crate::{password, IdentityError};

/// The roles every deployment has.
pub const ROLES: [&str; 5] = ["admin", "manager", "member", "reader", "service"];

/// What bootstrap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The admin user was created now (and openrc written).
    pub created_admin: bool,
    /// Path of the openrc written now, if any.
    pub openrc: Option<PathBuf>,
    /// Last stream position appended (for read-your-writes), if anything was.
    pub position: Option<u64>,
}

/// Options of [`bootstrap`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Where `openrc` goes.
    pub data_dir: PathBuf,
    /// Admin password (None: generated).
    pub admin_password: Option<String>,
    /// `OS_AUTH_URL`, e.g. `http://127.0.0.1:5000/v3`.
    pub auth_url: String,
    /// `OS_CACERT`: the CA file clients need to verify the endpoints (a self-signed
    /// certificate or `--tls-ca`); without it the CLI fails with
    /// `CERTIFICATE_VERIFY_FAILED`.
    pub cacert: Option<PathBuf>,
}

async fn ensure(
    log: &dyn EventLog,
    kind: NameKind,
    name: &str,
    who: &Actor,
    pos: &mut Option<u64>,
) -> Result<String, IdentityError> {
    for _ in 0..4 {
        if let Some(id) = commands::resolve(log, kind, name).await? {
            return Ok(id);
        }
        let n = IdentityName::new(name)?;
        let created = match kind {
            NameKind::Role => commands::create_role(log, n, who)
                .await
                .map(|(id, p)| (id.to_string(), p)),
            NameKind::Project => commands::create_project(
                log,
                n,
                "Bootstrap project for the admin user".into(),
                true,
                who,
            )
            .await
            .map(|(id, p)| (id.to_string(), p)),
            NameKind::User => unreachable!("users are created below"),
        };
        match created {
            Ok((id, p)) => {
                *pos = (*pos).max(p);
                return Ok(id);
            }
            // Another process created it meanwhile: look it up again.
            Err(IdentityError::Domain(domain::DomainError::Conflict(_))) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(IdentityError::Internal(format!(
        "bootstrap: {} {name} is claimed but does not exist",
        kind.as_str()
    )))
}

/// Bootstraps identity (see the module invariants).
pub async fn bootstrap(log: &dyn EventLog, opts: &Options) -> Result<Report, IdentityError> {
    let who = Actor::service("bootstrap");
    let mut pos = None;
    let mut roles = Vec::new();
    for r in ROLES {
        roles.push(ensure(log, NameKind::Role, r, &who, &mut pos).await?);
    }
    let project = ProjectId::new(ensure(log, NameKind::Project, "admin", &who, &mut pos).await?)?;
    let admin_role = RoleId::new(roles[0].clone())?;
    let mut report = Report {
        created_admin: false,
        openrc: None,
        position: None,
    };
    let user = match commands::resolve(log, NameKind::User, "admin").await? {
        Some(id) => UserId::new(id)?,
        None => {
            let password = opts
                .admin_password
                .clone()
                .unwrap_or_else(password::generate);
            let hash = password::hash(&password)?;
            let name = IdentityName::new("admin")?;
            match commands::create_user(log, name, hash, true, Some(project.clone()), &who).await {
                Ok((id, p)) => {
                    pos = pos.max(p);
                    let path = opts.data_dir.join("openrc");
                    write_openrc(
                        &path,
                        &opts.auth_url,
                        "admin",
                        &password,
                        "admin",
                        opts.cacert.as_deref(),
                    )?;
                    report.created_admin = true;
                    report.openrc = Some(path);
                    id
                }
                Err(IdentityError::Domain(domain::DomainError::Conflict(_))) => {
                    let id = commands::resolve(log, NameKind::User, "admin")
                        .await?
                        .ok_or_else(|| {
                            IdentityError::Internal(
                                "bootstrap: admin user claimed but missing".into(),
                            )
                        })?;
                    UserId::new(id)?
                }
                Err(e) => return Err(e),
            }
        }
    };
    // Also completes a bootstrap that stopped between the user and the grant.
    let p = commands::grant_role(log, &user, &project, &admin_role, &who).await?;
    report.position = pos.max(p);
    Ok(report)
}

/// Writes an openrc file with mode 0600 (atomically: a temporary file renamed).
pub fn write_openrc(
    path: &Path,
    auth_url: &str,
    user: &str,
    password: &str,
    project: &str,
    cacert: Option<&Path>,
) -> Result<(), IdentityError> {
    use std::io::Write as _;
    let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut text = format!(
        "# Stratus credentials (written at bootstrap). Use: source {}\n\
         export OS_AUTH_URL={}\n\
         export OS_USERNAME={}\n\
         export OS_PASSWORD={}\n\
         export OS_PROJECT_NAME={}\n\
         export OS_USER_DOMAIN_NAME=Default\n\
         export OS_PROJECT_DOMAIN_NAME=Default\n\
         export OS_IDENTITY_API_VERSION=3\n\
         export OS_REGION_NAME=RegionOne\n\
         export OS_INTERFACE=public\n",
        path.display(),
        q(auth_url),
        q(user),
        q(password),
        q(project),
    );
    if let Some(ca) = cacert {
        text.push_str(&format!(
            "export OS_CACERT={}\n",
            q(&ca.display().to_string())
        ));
    }
    let tmp = path.with_extension("tmp");
    let err = |e: std::io::Error| IdentityError::Internal(format!("{}: {e}", path.display()));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(())
}
