//! `stratus bench --guests N`: real guests on libvirt (issue 14, item 7).
//!
//! Starts the all-in-one with the libvirt driver (`--libvirt-uri`, default
//! `qemu:///system`; a build with `--features libvirt`), registers the tiny test guest
//! of `ops/guest/build.sh` (`--guest-dir`, default `target/guest`) as an AKI/ARI/AMI
//! triple, then measures through the HTTP API:
//!
//! 1. Latency, one guest at a time (`--guest-rounds`, default 5): create -> ACTIVE,
//!    create -> the guest's init printed its ready marker on the serial console (the
//!    guest really booted), and delete -> gone (the API answers 404 and libvirt has no
//!    such domain).
//! 2. Capacity: guests are created one after another and kept running (each waited for
//!    until its ready marker, so every earlier guest is booted and idle) until a
//!    create -> ACTIVE takes more than 10 s or `N` run at once; then all are deleted.
//!
//! Nothing here is a pass/fail threshold: the figures are printed for the notes.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::stack::{DriverKind, LibvirtConfig, Stack, StackOptions};

/// What `stratus bench --guests` measured.
#[derive(Debug, Clone, Default)]
pub struct GuestReport {
    /// Virtualization type used (`qemu`: TCG, `kvm`).
    pub virt_type: String,
    /// Seconds of each sequential round: create -> ACTIVE, create -> ready, delete -> gone.
    pub to_active: Vec<f64>,
    pub to_ready: Vec<f64>,
    pub to_gone: Vec<f64>,
    /// Guests running at once when the capacity phase ended, and each one's create ->
    /// ACTIVE and create -> ready seconds in order.
    pub running: usize,
    pub ramp_active: Vec<f64>,
    pub ramp_ready: Vec<f64>,
    /// Why the capacity phase ended.
    pub ended: String,
}

/// Options of the guest benchmark.
#[derive(Debug, Clone)]
pub struct GuestOptions {
    pub uri: String,
    pub virt_type: String,
    pub guest_dir: std::path::PathBuf,
    pub cycles: usize,
    pub max_guests: usize,
}

const TOKEN: &str = "bench:guests";
/// A create -> ACTIVE slower than this ends the capacity phase (issue 14, item 7).
const ACTIVE_LIMIT: Duration = Duration::from_secs(10);

/// Runs the benchmark on a fresh all-in-one.
pub async fn run(o: GuestOptions) -> anyhow::Result<GuestReport> {
    let data_dir = std::env::temp_dir().join(format!("stratus-guests-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&data_dir)?;
    // QEMU runs as libvirt's own user: the instances' files must be reachable.
    set_mode(&data_dir, 0o755)?;
    let mut so = StackOptions::new(&data_dir);
    so.listen = "127.0.0.1:0".parse()?;
    so.auth = crate::stack::AuthKind::NoAuth;
    so.identity_listen = "127.0.0.1:0".parse()?;
    so.image_listen = "127.0.0.1:0".parse()?;
    so.hosts = 1;
    so.driver = DriverKind::Libvirt(LibvirtConfig {
        uri: o.uri.clone(),
        virt_type: o.virt_type.clone(),
        instances_dir: None,
        size: [None, None, None],
        shutdown_timeout: Duration::from_secs(60),
    });
    let stack = Stack::start(so).await?;
    let r = measure(&stack, &o).await;
    stack.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    r
}

#[cfg(unix)]
fn set_mode(p: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

struct Api {
    http: reqwest::Client,
    base: String,
    image: String,
}

impl Api {
    async fn send(&self, r: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        Ok(r.header("X-Auth-Token", TOKEN)
            .header("OpenStack-API-Version", "compute 2.90")
            .send()
            .await?)
    }

    /// Registers `file` as an image of `format` with `props`; returns its id.
    async fn image(
        &self,
        name: &str,
        format: &str,
        file: &[u8],
        props: Value,
    ) -> anyhow::Result<String> {
        let mut body = json!({"name": name, "disk_format": format, "container_format": format});
        if let (Some(b), Some(p)) = (body.as_object_mut(), props.as_object()) {
            b.extend(p.clone());
        }
        let r = self
            .send(
                self.http
                    .post(format!("{}/v2/images", self.image))
                    .json(&body),
            )
            .await?;
        if r.status().as_u16() != 201 {
            bail!("image create answered {}: {}", r.status(), r.text().await?);
        }
        let v: Value = r.json().await?;
        let id = v["id"].as_str().context("image id")?.to_string();
        let r = self
            .send(
                self.http
                    .put(format!("{}/v2/images/{id}/file", self.image))
                    .header("Content-Type", "application/octet-stream")
                    .body(file.to_vec()),
            )
            .await?;
        if r.status().as_u16() != 204 {
            bail!("image upload answered {}: {}", r.status(), r.text().await?);
        }
        Ok(id)
    }

    async fn create(&self, name: &str, image: &str) -> anyhow::Result<String> {
        let body = json!({"server": {"name": name, "imageRef": image, "flavorRef": "1",
            "networks": "none", "config_drive": true}});
        let r = self
            .send(
                self.http
                    .post(format!("{}/v2.1/servers", self.base))
                    .json(&body),
            )
            .await?;
        if r.status().as_u16() != 202 {
            bail!("create answered {}: {}", r.status(), r.text().await?);
        }
        let v: Value = r.json().await?;
        Ok(v["server"]["id"].as_str().context("server id")?.to_string())
    }

    async fn show(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let r = self
            .send(self.http.get(format!("{}/v2.1/servers/{id}", self.base)))
            .await?;
        if r.status().as_u16() == 404 {
            return Ok(None);
        }
        let v: Value = r.json().await?;
        Ok(Some(v["server"].clone()))
    }

    async fn console(&self, id: &str) -> anyhow::Result<String> {
        let r = self
            .send(
                self.http
                    .post(format!("{}/v2.1/servers/{id}/action", self.base))
                    .json(&json!({"os-getConsoleOutput": {"length": -1}})),
            )
            .await?;
        let v: Value = r.json().await?;
        Ok(v["output"].as_str().unwrap_or_default().to_string())
    }

    /// Seconds from `t0` until the server is ACTIVE with no task.
    async fn until_active(&self, id: &str, t0: Instant, limit: Duration) -> anyhow::Result<f64> {
        loop {
            let s = self.show(id).await?.context("server vanished")?;
            if s["status"] == "ACTIVE" && s["OS-EXT-STS:task_state"].is_null() {
                return Ok(t0.elapsed().as_secs_f64());
            }
            if s["status"] == "ERROR" {
                bail!("server {id} went to ERROR: {}", s["fault"]);
            }
            if t0.elapsed() > limit {
                bail!("server {id} not ACTIVE after {limit:?}: {}", s["status"]);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Seconds from `t0` until the guest's init printed its ready marker.
    async fn until_ready(&self, id: &str, t0: Instant, limit: Duration) -> anyhow::Result<f64> {
        loop {
            if self.console(id).await?.contains("STRATUS-GUEST-READY") {
                return Ok(t0.elapsed().as_secs_f64());
            }
            if t0.elapsed() > limit {
                bail!("guest {id} never printed its ready marker in {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Deletes and waits until the API answers 404; seconds.
    async fn delete(&self, id: &str) -> anyhow::Result<f64> {
        let t0 = Instant::now();
        let r = self
            .send(self.http.delete(format!("{}/v2.1/servers/{id}", self.base)))
            .await?;
        if r.status().as_u16() != 204 {
            bail!("delete answered {}", r.status());
        }
        while self.show(id).await?.is_some() {
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("server {id} not gone after 120 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(t0.elapsed().as_secs_f64())
    }
}

async fn measure(stack: &Stack, o: &GuestOptions) -> anyhow::Result<GuestReport> {
    let image_addr = stack.image_addr.context("the all-in-one serves images")?;
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://{}", stack.addr),
        image: format!("http://{image_addr}"),
    };
    let read = |f: &str| {
        let p = o.guest_dir.join(f);
        std::fs::read(&p).with_context(|| {
            format!(
                "{}: build the guest first (ops/guest/build.sh)",
                p.display()
            )
        })
    };
    let kernel = api
        .image("guest-kernel", "aki", &read("vmlinuz")?, json!({}))
        .await?;
    let ramdisk = api
        .image("guest-ramdisk", "ari", &read("initrd.img")?, json!({}))
        .await?;
    let machine = api
        .image(
            "guest-machine",
            "ami",
            &vec![0u8; 1 << 20],
            json!({"kernel_id": kernel, "ramdisk_id": ramdisk, "os_command_line": "console=ttyS0"}),
        )
        .await?;
    let host = domain::HostName::new("host1").context("host name")?;
    let mut rep = GuestReport {
        virt_type: o.virt_type.clone(),
        ..GuestReport::default()
    };
    for n in 0..o.cycles {
        let t0 = Instant::now();
        let id = api.create(&format!("lat-{n}"), &machine).await?;
        rep.to_active
            .push(api.until_active(&id, t0, Duration::from_secs(120)).await?);
        rep.to_ready
            .push(api.until_ready(&id, t0, Duration::from_secs(180)).await?);
        rep.to_gone.push(api.delete(&id).await?);
        let iid = domain::InstanceId::parse(&id).context("server id")?;
        if stack.driver.domains(&host).contains_key(&iid) {
            bail!("libvirt still has the domain of deleted server {id}");
        }
    }
    let mut ids = Vec::new();
    rep.ended = format!("{} guests running (the --guests limit)", o.max_guests);
    for n in 0..o.max_guests {
        let t0 = Instant::now();
        let id = api.create(&format!("cap-{n}"), &machine).await?;
        ids.push(id.clone());
        let active = match api.until_active(&id, t0, Duration::from_secs(300)).await {
            Ok(s) => s,
            Err(e) => {
                rep.ended = format!("guest {} failed: {e}", n + 1);
                break;
            }
        };
        rep.ramp_active.push(active);
        if active > ACTIVE_LIMIT.as_secs_f64() {
            rep.ended = format!("guest {}'s create -> ACTIVE took {active:.1} s", n + 1);
            break;
        }
        match api.until_ready(&id, t0, Duration::from_secs(600)).await {
            Ok(s) => rep.ramp_ready.push(s),
            Err(e) => {
                rep.ended = format!("guest {}: {e}", n + 1);
                break;
            }
        }
        rep.running = n + 1;
    }
    for id in &ids {
        api.delete(id).await?;
    }
    Ok(rep)
}

/// Median and max of `xs`.
fn stats(xs: &[f64]) -> String {
    if xs.is_empty() {
        return "-".into();
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    format!("p50 {:.2} s, max {:.2} s", v[v.len() / 2], v[v.len() - 1])
}

impl GuestReport {
    /// The lines `stratus bench --guests` prints.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!("stratus bench --guests (libvirt, domain type {})", self.virt_type),
            format!(
                "  one at a time ({} rounds): create -> ACTIVE {}; create -> guest ready {}; delete -> gone {}",
                self.to_active.len(),
                stats(&self.to_active),
                stats(&self.to_ready),
                stats(&self.to_gone)
            ),
            format!(
                "  at once: {} guests running; their create -> ACTIVE {}, create -> ready {}; ended: {}",
                self.running,
                stats(&self.ramp_active),
                stats(&self.ramp_ready),
                self.ended
            ),
            format!(
                "  create -> ACTIVE in order: {}",
                self.ramp_active
                    .iter()
                    .map(|s| format!("{s:.1}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ]
    }
}
