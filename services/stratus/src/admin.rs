//! `stratus admin`: identity management on the log, offline on the embedded store (the
//! data directory of a stopped server) or alongside running processes on JetStream.
//!
//! Invariants: every command goes through `identity::commands` (decide on state read
//! from the log, append with OCC), exactly like the identity API, so a refused command
//! (duplicate name, unknown user / project / role) writes nothing; names resolve
//! through the name index; lists fold the api stream.

use anyhow::Context as _;
use domain::identity::{IdentityName, NameKind, RoleId};
use domain::{ProjectId, UserId};
use eventlog::{EventLog, StreamName};
use identity::commands::{self, Actor};
use projections::Views;

fn err(e: identity::IdentityError) -> anyhow::Error {
    anyhow::anyhow!("{}", e.status_message().1)
}

async fn resolve(log: &dyn EventLog, kind: NameKind, name_or_id: &str) -> anyhow::Result<String> {
    if let Some(id) = commands::resolve(log, kind, name_or_id)
        .await
        .map_err(err)?
    {
        return Ok(id);
    }
    // Not a name: maybe an id.
    let subject = match kind {
        NameKind::Project => ProjectId::new(name_or_id)
            .ok()
            .map(|i| projections::identity::project_subject(&i)),
        NameKind::User => UserId::new(name_or_id)
            .ok()
            .map(|i| projections::identity::user_subject(&i)),
        NameKind::Role => RoleId::new(name_or_id)
            .ok()
            .map(|i| projections::identity::role_subject(&i)),
    };
    if let Some(s) = subject {
        if log.last_subject_seq(&s).await? > 0 {
            return Ok(name_or_id.to_string());
        }
    }
    anyhow::bail!("No {} with name or id {name_or_id} exists.", kind.as_str())
}

fn actor() -> Actor {
    Actor::service("stratus-admin")
}

/// `project create NAME`: prints the new project's id.
pub async fn project_create(
    log: &dyn EventLog,
    name: &str,
    description: &str,
) -> anyhow::Result<ProjectId> {
    let name = IdentityName::new(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (id, _) = commands::create_project(log, name, description.to_string(), true, &actor())
        .await
        .map_err(err)?;
    Ok(id)
}

/// `user create NAME --password P [--project P --role R]`.
pub async fn user_create(
    log: &dyn EventLog,
    name: &str,
    password: &str,
    project: Option<&str>,
    role: Option<&str>,
) -> anyhow::Result<UserId> {
    let name = IdentityName::new(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    if role.is_some() && project.is_none() {
        anyhow::bail!("--role needs --project");
    }
    // Resolve everything before writing anything.
    let project = match project {
        Some(p) => Some(ProjectId::new(resolve(log, NameKind::Project, p).await?)?),
        None => None,
    };
    let role = match role {
        Some(r) => Some(RoleId::new(resolve(log, NameKind::Role, r).await?)?),
        None => None,
    };
    let hash = identity::password::hash(password).map_err(err)?;
    let who = actor();
    let (id, _) = commands::create_user(log, name, hash, true, project.clone(), &who)
        .await
        .map_err(err)?;
    if let (Some(p), Some(r)) = (&project, &role) {
        commands::grant_role(log, &id, p, r, &who)
            .await
            .map_err(err)?;
    }
    Ok(id)
}

/// `role add --user U --project P ROLE`.
pub async fn role_add(
    log: &dyn EventLog,
    user: &str,
    project: &str,
    role: &str,
) -> anyhow::Result<()> {
    let u = UserId::new(resolve(log, NameKind::User, user).await?)?;
    let p = ProjectId::new(resolve(log, NameKind::Project, project).await?)?;
    let r = RoleId::new(resolve(log, NameKind::Role, role).await?)?;
    commands::grant_role(log, &u, &p, &r, &actor())
        .await
        .map_err(err)?;
    Ok(())
}

/// `user set NAME --enable|--disable|--password P`.
pub async fn user_set(
    log: &dyn EventLog,
    user: &str,
    enabled: Option<bool>,
    password: Option<&str>,
) -> anyhow::Result<()> {
    if enabled.is_none() && password.is_none() {
        anyhow::bail!("nothing to change: give --enable, --disable or --password");
    }
    let u = UserId::new(resolve(log, NameKind::User, user).await?)?;
    let hash = match password {
        Some(p) => Some(identity::password::hash(p).map_err(err)?),
        None => None,
    };
    let who = actor();
    if let Some(h) = hash {
        commands::set_password(log, &u, h, Default::default(), &who)
            .await
            .map_err(err)?;
    }
    if let Some(e) = enabled {
        commands::set_enabled(log, &u, e, &who).await.map_err(err)?;
    }
    Ok(())
}

async fn views(log: &dyn EventLog) -> anyhow::Result<Views> {
    let mut v = Views::default();
    crate::cells::fold_stream(log, &StreamName::api(), &mut v)
        .await
        .context("cannot read the api stream")?;
    Ok(v)
}

fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// `project list`: ID, NAME, ENABLED.
pub async fn project_list(log: &dyn EventLog) -> anyhow::Result<String> {
    let v = views(log).await?;
    let rows = v
        .identity()
        .projects()
        .into_iter()
        .map(|p| vec![p.id.to_string(), p.name.to_string(), p.enabled.to_string()])
        .collect();
    Ok(table(&["ID", "NAME", "ENABLED"], rows))
}

/// `user list`: ID, NAME, ENABLED, ROLES (`role@project`).
pub async fn user_list(log: &dyn EventLog) -> anyhow::Result<String> {
    let v = views(log).await?;
    let ids = v.identity();
    let rows = ids
        .users()
        .into_iter()
        .map(|u| {
            let roles: Vec<String> = u
                .roles
                .iter()
                .map(|(p, r)| {
                    let p = ids
                        .project(p)
                        .map(|p| p.name.to_string())
                        .unwrap_or(p.to_string());
                    let r = ids
                        .role(r)
                        .map(|r| r.name.to_string())
                        .unwrap_or(r.to_string());
                    format!("{r}@{p}")
                })
                .collect();
            vec![
                u.id.to_string(),
                u.name.to_string(),
                u.enabled.to_string(),
                roles.join(","),
            ]
        })
        .collect();
    Ok(table(&["ID", "NAME", "ENABLED", "ROLES"], rows))
}

/// `role list`: ID, NAME.
pub async fn role_list(log: &dyn EventLog) -> anyhow::Result<String> {
    let v = views(log).await?;
    let rows = v
        .identity()
        .roles()
        .into_iter()
        .map(|r| vec![r.id.to_string(), r.name.to_string()])
        .collect();
    Ok(table(&["ID", "NAME"], rows))
}
