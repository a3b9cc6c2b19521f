//! `stratus bench --ports N`: exact IP address management under contention, over real
//! HTTP. The all-in-one starts in process (embedded store, or JetStream with `--nats`);
//! one project creates a network whose only subnet has room for exactly `N / 2`
//! addresses, then `--concurrency` clients send `N` `POST /v2.0/ports` on it. Every
//! create is decided on the network's aggregate (one subject: its subnets, ports and
//! address book) with optimistic concurrency, so exactly `N / 2` must succeed with
//! distinct addresses and the others be refused with Neutron's
//! `IpAddressGenerationFailure` (409); anything else fails the bench. Then every
//! accepted port is deleted concurrently and the network must be left without ports.
//!
//! The project's port quota is lifted first (Neutron's default of 500 would refuse
//! first), but each create still reserves and each delete releases on the project's
//! quota ledger, so that cost is measured too.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, ensure, Context as _};
use eventlog::LockExt;
use serde_json::{json, Value};

use crate::bench::percentile;
use crate::stack::{AuthKind, Stack, StackOptions};

/// The benchmark's project (a member: ports are created as Neutron users do).
const MEMBER: &str = "bench:netbench";
/// The project of [`MEMBER`].
const PROJECT: &str = "netbench";
/// The noauth admin (lifts the project's port quota).
const ADMIN: &str = "admin:admin";

/// Figures of the port-create measurement.
#[derive(Debug, Clone)]
pub struct PortsReport {
    /// Creates sent.
    pub creates: u64,
    /// Addresses the subnet has room for (`creates / 2`).
    pub room: u64,
    /// The subnet's CIDR and allocation pool.
    pub cidr: String,
    pub pool: (Ipv4Addr, Ipv4Addr),
    /// Creates accepted (201).
    pub accepted: u64,
    /// Distinct addresses among the accepted ports.
    pub distinct: u64,
    /// Creates refused with `IpAddressGenerationFailure` (409).
    pub refused: u64,
    /// Wall time of the creates.
    pub seconds: f64,
    /// Latency p50 / p99 of an accepted create (ms).
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Latency p50 of a refused create (ms).
    pub refused_p50_ms: f64,
    /// Wall time of deleting every accepted port.
    pub delete_seconds: f64,
}

impl PortsReport {
    /// Creates per second (accepted and refused).
    pub fn creates_per_s(&self) -> f64 {
        self.creates as f64 / self.seconds
    }

    /// Deletes per second.
    pub fn deletes_per_s(&self) -> f64 {
        self.accepted as f64 / self.delete_seconds
    }
}

/// The smallest IPv4 subnet inside 10.0.0.0/8 with room for `room` addresses in one
/// allocation pool (besides the network address, the gateway and the broadcast), and
/// that pool: from the address after the gateway, exactly `room` long.
pub fn sized_subnet(room: u64) -> anyhow::Result<(String, Ipv4Addr, Ipv4Addr)> {
    ensure!(room >= 1, "--ports needs at least 2 creates");
    let host_bits = (2..=24u32)
        .find(|h| (1u64 << h) - 3 >= room)
        .context("--ports: more addresses than 10.0.0.0/8 holds (at most 16,777,213)")?;
    // 10.64.0.0 is aligned for any prefix of /10 or longer; larger ones start at 10/8.
    let base: u32 = if host_bits <= 22 {
        u32::from(Ipv4Addr::new(10, 64, 0, 0))
    } else {
        u32::from(Ipv4Addr::new(10, 0, 0, 0))
    };
    let start = base + 2;
    let end = start + room as u32 - 1;
    Ok((
        format!("{}/{}", Ipv4Addr::from(base), 32 - host_bits),
        Ipv4Addr::from(start),
        Ipv4Addr::from(end),
    ))
}

/// What one create answered.
enum Answer {
    Accepted { id: String, ip: IpAddr, us: u32 },
    Refused { us: u32 },
}

/// Runs the measurement on a fresh all-in-one (JetStream at `nats` when given).
pub async fn ports(
    creates: u64,
    concurrency: usize,
    nats: Option<String>,
) -> anyhow::Result<PortsReport> {
    let room = creates / 2;
    let (cidr, first, last) = sized_subnet(room)?;
    let data_dir = std::env::temp_dir().join(format!("stratus-bench-{}", uuid::Uuid::new_v4()));
    let mut so = StackOptions::new(&data_dir);
    so.listen = "127.0.0.1:0".parse()?;
    so.auth = AuthKind::NoAuth;
    so.identity_listen = "127.0.0.1:0".parse()?;
    so.nats = nats;
    let stack = Stack::start(so).await?;
    let res = measure(&stack, creates, concurrency, &cidr, first, last).await;
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let (answers, seconds, delete_seconds) = res?;
    let (mut ok_lat, mut refused_lat, mut ips) = (vec![], vec![], BTreeSet::new());
    for a in &answers {
        match a {
            Answer::Accepted { ip, us, .. } => {
                ok_lat.push(*us);
                ips.insert(*ip);
            }
            Answer::Refused { us } => refused_lat.push(*us),
        }
    }
    ok_lat.sort_unstable();
    refused_lat.sort_unstable();
    let report = PortsReport {
        creates,
        room,
        cidr,
        pool: (first, last),
        accepted: ok_lat.len() as u64,
        distinct: ips.len() as u64,
        refused: refused_lat.len() as u64,
        seconds,
        p50_ms: percentile(&ok_lat, 0.50),
        p99_ms: percentile(&ok_lat, 0.99),
        refused_p50_ms: percentile(&refused_lat, 0.50),
        delete_seconds,
    };
    Ok(report)
}

/// Sets up the network, sends the creates, checks the outcome, deletes the ports:
/// (every answer, create seconds, delete seconds).
async fn measure(
    stack: &Stack,
    creates: u64,
    concurrency: usize,
    cidr: &str,
    first: Ipv4Addr,
    last: Ipv4Addr,
) -> anyhow::Result<(Vec<Answer>, f64, f64)> {
    let addr = stack
        .network_addr
        .context("the all-in-one serves no network API")?;
    let base = format!("http://{addr}/v2.0");
    let concurrency = concurrency.max(1);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let call = |method: reqwest::Method, path: String, token: &'static str, body: Option<Value>| {
        let mut rb = http
            .request(method, format!("{base}{path}"))
            .header("X-Auth-Token", token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        async move {
            let r = rb.send().await?;
            let code = r.status().as_u16();
            let bytes = r.bytes().await?;
            Ok::<_, anyhow::Error>((code, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
        }
    };
    use reqwest::Method as M;
    let (code, v) = call(
        M::PUT,
        format!("/quotas/{PROJECT}"),
        ADMIN,
        Some(json!({"quota": {"port": -1}})),
    )
    .await?;
    ensure!(code == 200, "lifting the port quota answered {code}: {v}");
    let (code, v) = call(
        M::POST,
        "/networks".into(),
        MEMBER,
        Some(json!({"network": {"name": "bench-ports"}})),
    )
    .await?;
    ensure!(code == 201, "network create answered {code}: {v}");
    let network = v["network"]["id"]
        .as_str()
        .context("network id")?
        .to_string();
    let (code, v) = call(
        M::POST,
        "/subnets".into(),
        MEMBER,
        Some(json!({"subnet": {
            "network_id": network, "name": "bench-ports", "ip_version": 4, "cidr": cidr,
            "allocation_pools": [{"start": first.to_string(), "end": last.to_string()}],
        }})),
    )
    .await?;
    ensure!(code == 201, "subnet create answered {code}: {v}");

    let next = Arc::new(AtomicU64::new(0));
    let answers = Arc::new(Mutex::new(Vec::with_capacity(creates as usize)));
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (http, base, network, next, answers) = (
            http.clone(),
            base.clone(),
            network.clone(),
            next.clone(),
            answers.clone(),
        );
        handles.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= creates {
                    return Ok::<_, anyhow::Error>(());
                }
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/ports"))
                    .header("X-Auth-Token", MEMBER)
                    .json(&json!({"port": {"network_id": network, "name": format!("p{n}")}}))
                    .send()
                    .await?;
                let code = r.status().as_u16();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let a = match code {
                    201 => Answer::Accepted {
                        id: v["port"]["id"].as_str().context("port id")?.to_string(),
                        ip: v["port"]["fixed_ips"][0]["ip_address"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .with_context(|| format!("accepted port without an address: {v}"))?,
                        us,
                    },
                    409 if v["NeutronError"]["type"] == "IpAddressGenerationFailure" => {
                        Answer::Refused { us }
                    }
                    c => bail!("port create answered {c}: {v}"),
                };
                answers.lock_or_recover().push(a);
            }
        }));
    }
    let mut first_err = None;
    for h in handles {
        if let Err(e) = h.await? {
            first_err.get_or_insert(e);
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(e) = first_err {
        return Err(e.context("a port benchmark client failed"));
    }
    let answers = std::mem::take(&mut *answers.lock_or_recover());

    // Exactness: room for `room` addresses, so exactly that many accepted, each with
    // its own address inside the pool.
    let room = creates / 2;
    let mut ids = vec![];
    let mut ips = BTreeSet::new();
    for a in &answers {
        if let Answer::Accepted { id, ip, .. } = a {
            ids.push(id.clone());
            let inside = matches!(ip, IpAddr::V4(v4) if (first..=last).contains(v4));
            ensure!(
                inside,
                "port {id} got {ip}, outside the pool {first}-{last}"
            );
            ips.insert(*ip);
        }
    }
    ensure!(
        ids.len() as u64 == room,
        "{} ports accepted on a subnet with room for {room} ({} refused)",
        ids.len(),
        answers.len() - ids.len()
    );
    ensure!(
        ips.len() == ids.len(),
        "{} accepted ports share {} addresses",
        ids.len(),
        ips.len()
    );

    // Delete every accepted port, concurrently.
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicU64::new(0));
    let t1 = Instant::now();
    let mut handles = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (http, base, ids, next) = (http.clone(), base.clone(), ids.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(id) = ids.get(n) else {
                    return Ok::<_, anyhow::Error>(());
                };
                let r = http
                    .delete(format!("{base}/ports/{id}"))
                    .header("X-Auth-Token", MEMBER)
                    .send()
                    .await?;
                let code = r.status().as_u16();
                if code != 204 {
                    bail!(
                        "port delete answered {code}: {}",
                        r.text().await.unwrap_or_default()
                    );
                }
            }
        }));
    }
    let mut first_err = None;
    for h in handles {
        if let Err(e) = h.await? {
            first_err.get_or_insert(e);
        }
    }
    let delete_seconds = t1.elapsed().as_secs_f64();
    if let Some(e) = first_err {
        return Err(e.context("a port delete client failed"));
    }
    let (code, v) = call(M::GET, format!("/ports?network_id={network}"), MEMBER, None).await?;
    ensure!(code == 200, "port list answered {code}: {v}");
    let left = v["ports"].as_array().map(Vec::len).unwrap_or(0);
    ensure!(
        left == 0,
        "{left} ports left on the network after the deletes"
    );
    Ok((answers, seconds, delete_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subnet_has_room_for_exactly_what_is_asked() {
        assert_eq!(
            sized_subnet(1).unwrap(),
            (
                "10.64.0.0/30".to_string(),
                Ipv4Addr::new(10, 64, 0, 2),
                Ipv4Addr::new(10, 64, 0, 2)
            )
        );
        // 253 fits a /24 (network, gateway and broadcast aside); 254 does not.
        assert_eq!(sized_subnet(253).unwrap().0, "10.64.0.0/24");
        assert_eq!(sized_subnet(254).unwrap().0, "10.64.0.0/23");
        let (cidr, a, b) = sized_subnet(1000).unwrap();
        assert_eq!(cidr, "10.64.0.0/22");
        assert_eq!(u32::from(b) - u32::from(a) + 1, 1000);
        assert_eq!(sized_subnet(5_000_000).unwrap().0, "10.0.0.0/9");
        assert!(sized_subnet(0).is_err());
        assert!(sized_subnet(1 << 24).is_err());
    }
}
