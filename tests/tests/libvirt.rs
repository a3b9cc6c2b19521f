//! The whole server lifecycle through the HTTP API with the libvirt driver on libvirt's
//! in-process `test:///default`: every action leaves the API's state and libvirt's
//! domain state in agreement, and a deleted server leaves nothing defined or on disk.
#![cfg(feature = "libvirt")]

use std::time::{Duration, Instant};

use domain::{HostName, InstanceId, PowerState};
use serde_json::{json, Value};
use stratus::stack::{DriverKind, LibvirtConfig};
use tests::Harness;

const ALICE: &str = "alice:proj-a";
const ADMIN: &str = "admin:admin";
const HOSTS: [&str; 4] = ["host1", "host2", "host3", "host4"];

/// Where libvirt has the server's domain, and its state.
fn domains_of(h: &Harness, id: &str) -> Vec<(String, PowerState)> {
    let id = InstanceId::parse(id).unwrap();
    HOSTS
        .iter()
        .filter_map(|host| {
            h.stack
                .driver
                .domains(&HostName::new(*host).unwrap())
                .get(&id)
                .map(|p| (host.to_string(), *p))
        })
        .collect()
}

/// Polls until the server is `status` (no task), then checks libvirt has its one
/// domain on the server's host in `power` (None: no domain anywhere).
async fn expect(h: &Harness, id: &str, status: &str, power: Option<PowerState>) -> Value {
    let s = h.wait(id, status).await;
    let host = s["OS-EXT-SRV-ATTR:host"].as_str().unwrap_or("").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let want: Vec<(String, PowerState)> = power.map(|p| (host.clone(), p)).into_iter().collect();
    loop {
        let got = domains_of(h, id);
        if got == want {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{status}: libvirt has {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn libvirt(o: &mut stratus::stack::StackOptions) {
    o.driver = DriverKind::Libvirt(LibvirtConfig {
        size: [None, Some(64 * 1024), None],
        ..LibvirtConfig::new("test:///default")
    });
    o.sync_power_state_interval = Duration::from_millis(100);
}

/// A guest that powers itself off (here: destroyed behind Stratus's back) becomes
/// SHUTOFF through the power-state sync (the stop API, an operation in the log), with
/// no API call; an agent restarted while its guest runs finds it and boots no second
/// copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_powers_itself_off_becomes_shutoff() {
    // The test driver's state is the process's: this connection sees Stratus's domains.
    virt::error::clear_error_callback();
    let conn = virt::connect::Connect::open(Some("test:///default")).unwrap();
    // The periodic sync is far off: SHUTOFF comes from libvirt's lifecycle event.
    let h = Harness::start(|o| {
        libvirt(o);
        o.sync_power_state_interval = Duration::from_secs(3600);
    })
    .await;
    let id = h.create(ALICE, "vm", "1").await;
    expect(&h, &id, "ACTIVE", Some(PowerState::Running)).await;
    let dom = conn.lookup_domain_by_uuid_string(&id).unwrap();
    dom.destroy().unwrap();
    let s = expect(&h, &id, "SHUTOFF", Some(PowerState::Shutdown)).await;
    assert_eq!(s["OS-EXT-STS:power_state"], 4);
    let (code, v) = h
        .req(
            ALICE,
            reqwest::Method::GET,
            &format!("/servers/{id}/os-instance-actions"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(v["instanceActions"][0]["action"], "stop", "{v}");
    // The log says why: the observed power state first, then the stop.
    let v: serde_json::Value = h
        .http
        .get(format!("http://{}/v1/instances/{id}/events", h.stack.addr))
        .header("X-Auth-Token", ALICE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let types: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    let changed = types
        .iter()
        .position(|t| *t == "instance.power_state_changed")
        .unwrap_or_else(|| panic!("no instance.power_state_changed: {types:?}"));
    assert!(
        types[changed..].contains(&"instance.task_started"),
        "no stop after the observed power-off: {types:?}"
    );

    // Started again, then the agent restarts while the guest runs: still one running
    // domain, still ACTIVE.
    h.action(ALICE, &id, json!({"os-start": null}), 202).await;
    expect(&h, &id, "ACTIVE", Some(PowerState::Running)).await;
    let h = h.restart(libvirt).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    expect(&h, &id, "ACTIVE", Some(PowerState::Running)).await;
    assert_eq!(
        conn.list_all_domains(0)
            .unwrap()
            .iter()
            .filter(|d| d.uuid_string().ok().as_deref() == Some(id.as_str()))
            .count(),
        1
    );
    let (code, _) = h
        .req(
            ALICE,
            reqwest::Method::DELETE,
            &format!("/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(code, 204);
    expect(&h, &id, "GONE", None).await;
    h.stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_server_action_against_libvirt() {
    // vCPUs and disk from the test driver's node info, memory given; the power-state
    // sync runs every 100 ms throughout and must never stop a server by mistake.
    let h = Harness::start(libvirt).await;
    let instances = h.dir.path().join("instances");
    {
        let v = h.stack.engine.world().read();
        let host = v.hosts().values().next().expect("a host").state.spec.total;
        assert_eq!(host.vcpus, 16, "the test driver's node info");
        assert_eq!(host.ram_mb, 64 * 1024, "given explicitly");
    }
    use PowerState as P;
    let id = h.create(ALICE, "vm", "1").await;
    let s = expect(&h, &id, "ACTIVE", Some(P::Running)).await;
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    assert!(instances.join(&id).join("disk").is_file(), "root overlay");
    // os-getConsoleOutput reads the serial console's log file (the test driver runs
    // no guest: written here as a guest would).
    std::fs::write(
        instances.join(&id).join("console.log"),
        "boot\r\nstratus-guest login: \x07\n",
    )
    .unwrap();
    let v = h
        .action(
            ALICE,
            &id,
            json!({"os-getConsoleOutput": {"length": 2}}),
            200,
        )
        .await;
    assert_eq!(v["output"], "stratus-guest login: \n", "{v}");

    for (go, mid, power, back) in [
        ("pause", "PAUSED", P::Paused, "unpause"),
        ("suspend", "SUSPENDED", P::Suspended, "resume"),
        ("os-stop", "SHUTOFF", P::Shutdown, "os-start"),
    ] {
        h.action(ALICE, &id, json!({ go: null }), 202).await;
        expect(&h, &id, mid, Some(power)).await;
        h.action(ALICE, &id, json!({ back: null }), 202).await;
        expect(&h, &id, "ACTIVE", Some(P::Running)).await;
    }
    for kind in ["SOFT", "HARD"] {
        h.action(ALICE, &id, json!({"reboot": {"type": kind}}), 202)
            .await;
        expect(&h, &id, "ACTIVE", Some(P::Running)).await;
    }
    h.action(ALICE, &id, json!({"rescue": null}), 200).await;
    expect(&h, &id, "RESCUE", Some(P::Running)).await;
    assert!(instances.join(&id).join("disk.rescue").is_file());
    h.action(ALICE, &id, json!({"unrescue": null}), 202).await;
    expect(&h, &id, "ACTIVE", Some(P::Running)).await;
    assert!(!instances.join(&id).join("disk.rescue").exists());

    // Shelve offloads at once: no domain, no files.
    h.action(ALICE, &id, json!({"shelve": null}), 202).await;
    expect(&h, &id, "SHELVED_OFFLOADED", None).await;
    assert!(!instances.join(&id).exists(), "offloaded: files removed");
    h.action(ALICE, &id, json!({"unshelve": null}), 202).await;
    expect(&h, &id, "ACTIVE", Some(P::Running)).await;

    // Resize (to another host of this machine), confirm; resize, revert.
    h.action(ALICE, &id, json!({"resize": {"flavorRef": "2"}}), 202)
        .await;
    expect(&h, &id, "VERIFY_RESIZE", Some(P::Running)).await;
    h.action(ALICE, &id, json!({"confirmResize": null}), 204)
        .await;
    let s = expect(&h, &id, "ACTIVE", Some(P::Running)).await;
    let resized_on = s["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_string();
    h.action(ALICE, &id, json!({"resize": {"flavorRef": "3"}}), 202)
        .await;
    expect(&h, &id, "VERIFY_RESIZE", Some(P::Running)).await;
    h.action(ALICE, &id, json!({"revertResize": null}), 202)
        .await;
    let s = expect(&h, &id, "ACTIVE", Some(P::Running)).await;
    assert_eq!(s["OS-EXT-SRV-ATTR:host"], resized_on.as_str());
    assert_eq!(s["flavor"]["original_name"], "m1.small");
    // Cold migration (admin), confirmed.
    h.action(ADMIN, &id, json!({"migrate": null}), 202).await;
    let s = expect(&h, &id, "VERIFY_RESIZE", Some(P::Running)).await;
    assert_ne!(s["OS-EXT-SRV-ATTR:host"], resized_on.as_str());
    h.action(ALICE, &id, json!({"confirmResize": null}), 204)
        .await;
    expect(&h, &id, "ACTIVE", Some(P::Running)).await;

    // Live migration (admin): the guest runs on, defined on the new host.
    h.action(
        ADMIN,
        &id,
        json!({"os-migrateLive": {"host": null, "block_migration": "auto"}}),
        202,
    )
    .await;
    expect(&h, &id, "ACTIVE", Some(P::Running)).await;

    // Rebuild: a new overlay from the image, running again.
    h.action(
        ALICE,
        &id,
        json!({"rebuild": {"imageRef": "70a599e0-31e7-49b7-b260-868f441e862b"}}),
        202,
    )
    .await;
    expect(&h, &id, "ACTIVE", Some(P::Running)).await;
    // A stopped server rebuilt stays off.
    h.action(ALICE, &id, json!({"os-stop": null}), 202).await;
    expect(&h, &id, "SHUTOFF", Some(P::Shutdown)).await;
    h.action(
        ALICE,
        &id,
        json!({"rebuild": {"imageRef": "70a599e0-31e7-49b7-b260-868f441e862b"}}),
        202,
    )
    .await;
    expect(&h, &id, "SHUTOFF", Some(P::Shutdown)).await;
    h.action(ALICE, &id, json!({"os-start": null}), 202).await;
    expect(&h, &id, "ACTIVE", Some(P::Running)).await;

    // Delete: nothing defined, nothing on disk.
    let (code, _) = h
        .req(
            ALICE,
            reqwest::Method::DELETE,
            &format!("/servers/{id}"),
            None,
        )
        .await;
    assert_eq!(code, 204);
    expect(&h, &id, "GONE", None).await;
    assert!(!instances.join(&id).exists(), "deleted: files removed");
    h.stack.stop().await;
}
