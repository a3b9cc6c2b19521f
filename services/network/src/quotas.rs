//! `/v2.0/quotas`: Neutron's quota API over the network quota ledgers
//! (`domain::network::quota`), and [`Reconciler`], the periodic task that gives back
//! what a crashed request left reserved.
//!
//! Invariants:
//! - Every create of a counted resource reserves its id on the owner's ledger first
//!   ([`reserve`]); the delete that removes it (or a create that failed after the
//!   reservation) releases it. The reconciler releases holdings whose resource does not
//!   exist once [`GRACE`] has passed, so a process killed between the two appends
//!   leaks nothing for long.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use domain::network::quota::{NetLedger, NetQuotaCommand, NetResource};
use domain::{Ctx, NetworkId, PortId, SubnetId};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::auth::Caller;
use crate::body;
use crate::error::NetworkError;
use crate::extract::Path;
use crate::NetworkState;

/// How long a holding may wait for its resource before the reconciler gives it back.
pub const GRACE: Duration = Duration::from_secs(60);

/// Counts `id` against `project`'s limit of `r` (Neutron's `OverQuota` 409 when full).
pub async fn reserve(
    st: &NetworkState,
    caller: &Caller,
    project: &str,
    r: NetResource,
    id: Uuid,
) -> Result<(), NetworkError> {
    st.engine
        .reserve_network(project, r, id, &caller.ctx(), &caller.meta())
        .await
        .map_err(NetworkError::from)
}

/// Gives back `id` (best effort: the reconciler completes it).
pub async fn release(st: &NetworkState, caller: &Caller, project: &str, id: Uuid) {
    st.engine
        .release_network(project, vec![id], &caller.ctx(), &caller.meta())
        .await;
}

fn quota_body(l: Option<&NetLedger>) -> Map<String, Value> {
    let empty = NetLedger::default();
    let l = l.unwrap_or(&empty);
    NetResource::ALL
        .iter()
        .map(|r| (r.key().to_string(), json!(l.limit(*r))))
        .collect()
}

fn ledger(st: &NetworkState, project: &str) -> Option<NetLedger> {
    st.engine
        .world()
        .read()
        .network_quotas()
        .ledger(project)
        .map(|r| r.state.clone())
}

/// Only an admin reads another project's quotas.
fn check_read(caller: &Caller, project: &str) -> Result<(), NetworkError> {
    if project != caller.project && !caller.is_admin() {
        return Err(NetworkError::policy("get_quota"));
    }
    Ok(())
}

/// `GET /v2.0/quotas`: the projects with limits set (admin).
pub async fn list(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, NetworkError> {
    if !caller.is_admin() {
        return Err(NetworkError::policy("get_quota"));
    }
    let quotas: Vec<Value> = {
        let views = st.engine.world().read();
        views
            .network_quotas()
            .all()
            .filter(|(_, l)| !l.limits.is_empty())
            .map(|(p, l)| {
                let mut m = quota_body(Some(l));
                m.insert("project_id".into(), json!(p));
                m.insert("tenant_id".into(), json!(p));
                Value::Object(m)
            })
            .collect()
    };
    Ok(Json(json!({ "quotas": quotas })))
}

/// `GET /v2.0/quotas/project`: the caller's project.
pub async fn project(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(json!({"project": {"project_id": caller.project}}))
}

/// `GET /v2.0/quotas/tenant`: the caller's project (deprecated name).
pub async fn tenant(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(json!({"tenant": {"tenant_id": caller.project}}))
}

/// `GET /v2.0/quotas/{project_id}`.
pub async fn show(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path,
) -> Result<Json<Value>, NetworkError> {
    check_read(&caller, &project)?;
    Ok(Json(
        json!({"quota": quota_body(ledger(&st, &project).as_ref())}),
    ))
}

/// `GET /v2.0/quotas/{project_id}/default`.
pub async fn defaults(
    Extension(caller): Extension<Caller>,
    Path(project): Path,
) -> Result<Json<Value>, NetworkError> {
    check_read(&caller, &project)?;
    Ok(Json(json!({"quota": quota_body(None)})))
}

/// `GET /v2.0/quotas/{project_id}/details`: limit, used (live resources) and reserved
/// (held, not yet created) per resource.
pub async fn details(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path,
) -> Result<Json<Value>, NetworkError> {
    check_read(&caller, &project)?;
    let views = st.engine.world().read();
    let empty = NetLedger::default();
    let row = views.network_quotas().ledger(&project);
    let l = row.map_or(&empty, |r| &r.state);
    let body: Map<String, Value> = NetResource::ALL
        .iter()
        .map(|r| {
            let (mut used, mut reserved) = (0, 0);
            for (id, _) in l.holdings.iter().filter(|(_, h)| h.resource == *r) {
                if exists(&views, *r, *id) {
                    used += 1;
                } else {
                    reserved += 1;
                }
            }
            (
                r.key().to_string(),
                json!({"limit": l.limit(*r), "used": used, "reserved": reserved}),
            )
        })
        .collect();
    Ok(Json(json!({ "quota": body })))
}

/// `PUT /v2.0/quotas/{project_id}` (admin).
pub async fn update(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, NetworkError> {
    if !caller.is_admin() {
        return Err(NetworkError::policy("update_quota"));
    }
    let mut a = body::resource(&raw, "quota")?;
    let force = a.boolean("force")?.unwrap_or(false);
    let _ = a.boolean("check_limit")?;
    let mut limits = BTreeMap::new();
    for r in NetResource::ALL {
        if let Some(v) = a.integer(r.key())? {
            limits.insert(r, v);
        }
    }
    a.finish()?;
    st.engine
        .network_quota(
            &project,
            NetQuotaCommand::SetLimits { limits, force },
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(Json(
        json!({"quota": quota_body(ledger(&st, &project).as_ref())}),
    ))
}

/// `DELETE /v2.0/quotas/{project_id}` (admin): back to the defaults.
pub async fn reset(
    State(st): State<NetworkState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path,
) -> Result<StatusCode, NetworkError> {
    if !caller.is_admin() {
        return Err(NetworkError::policy("delete_quota"));
    }
    st.engine
        .network_quota(
            &project,
            NetQuotaCommand::Reset,
            &caller.ctx(),
            &caller.meta(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the resource a holding counts exists. Kinds nothing reserves (subnet pools,
/// RBAC policies) count as existing.
pub fn exists(views: &projections::Views, r: NetResource, id: Uuid) -> bool {
    let nets = views.networks();
    match r {
        NetResource::Network => nets.get(&NetworkId(id)).is_some(),
        NetResource::Subnet => nets.subnet(&SubnetId(id)).is_some(),
        NetResource::Port => nets.port(&PortId(id)).is_some(),
        NetResource::Router => views.routers().get(&domain::RouterId(id)).is_some(),
        NetResource::FloatingIp => views
            .floating_ips()
            .get(&domain::FloatingIpId(id))
            .is_some(),
        NetResource::SecurityGroup => views
            .security_groups()
            .get(&domain::SecurityGroupId(id))
            .is_some(),
        NetResource::SecurityGroupRule => views
            .security_groups()
            .rule(&domain::SecurityGroupRuleId(id))
            .is_some(),
        NetResource::SubnetPool | NetResource::RbacPolicy => true,
    }
}

/// The network reconciler: gives back quota holdings and subnet pool prefixes whose
/// resource never appeared (or is gone) once [`GRACE`] has passed: what a request
/// killed between its reservation and its create (or between its delete and its
/// release) left.
#[derive(Debug, Default)]
pub struct Reconciler;

#[async_trait::async_trait]
impl engine::Periodic for Reconciler {
    fn name(&self) -> &str {
        "network-quota-reconciler"
    }

    async fn run(&self, engine: &Arc<engine::Engine>) -> Result<(), engine::runtime::TaskError> {
        let now = engine::now();
        let grace = GRACE.as_micros() as i64;
        let stale: Vec<(String, Vec<Uuid>)> = {
            let views = engine.world().read();
            views
                .network_quotas()
                .all()
                .filter_map(|(project, l)| {
                    let ids: Vec<Uuid> = l
                        .holdings
                        .iter()
                        .filter(|(id, h)| {
                            now.0 - h.at.0 > grace && !exists(&views, h.resource, **id)
                        })
                        .map(|(id, _)| *id)
                        .collect();
                    (!ids.is_empty()).then_some((project, ids))
                })
                .collect()
        };
        // Prefixes of subnet pools whose subnet never appeared (or is gone).
        let orphans: Vec<(domain::SubnetPoolId, SubnetId)> = {
            let views = engine.world().read();
            views
                .subnet_pools()
                .all()
                .flat_map(|p| {
                    p.allocations
                        .iter()
                        .filter(|(sid, (_, at))| {
                            now.0 - at.0 > grace && views.networks().subnet(sid).is_none()
                        })
                        .map(|(sid, _)| (p.spec.id, *sid))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for (pool, subnet) in orphans {
            let ctx = Ctx::service("network-reconciler", now, Uuid::new_v4());
            let meta = engine::Meta::service(
                "network-reconciler",
                &format!("req-{}", Uuid::new_v4()),
                "reconcile",
                domain::dedupe::subnet_pool_release(&pool, &subnet),
            );
            tracing::info!(%pool, %subnet, "giving back the prefix of a subnet that does not exist");
            engine
                .subnet_pool(
                    &pool,
                    domain::network::pool::PoolCommand::Release { subnet },
                    &ctx,
                    &meta,
                )
                .await?;
        }
        for (project, ids) in stale {
            let ctx = Ctx::service("network-quota", now, Uuid::new_v4());
            let meta = engine::Meta::service(
                "network-quota",
                &format!("req-{}", Uuid::new_v4()),
                "reconcile",
                domain::dedupe::network_quota_release(&project, &ids[0]),
            );
            tracing::info!(%project, count = ids.len(), "giving back network quota of resources that do not exist");
            engine
                .network_quota(&project, NetQuotaCommand::Release { ids }, &ctx, &meta)
                .await?;
        }
        Ok(())
    }
}
