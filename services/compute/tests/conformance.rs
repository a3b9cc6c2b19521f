//! The driver conformance suite: one set of checks for every [`VirtDriver`] (the
//! simulated driver always; the libvirt driver on libvirt's in-process
//! `test:///default` with `--features libvirt`): every task leaves the expected power
//! state, a second spawn is no second guest, delete leaves nothing, errors are errors.

use std::collections::BTreeMap;

use compute::{GuestContext, SimDriver, SimOptions, VirtDriver};
use domain::flavor::FlavorSpec;
use domain::instance::{
    self, FlavorSnapshot, Instance, InstanceEvent, InstanceSpec, Migration, MigrationKind, Networks,
};
use domain::{FlavorId, HostName, InstanceId, MigrationId, PowerState, TaskState, Timestamp};
use uuid::Uuid;

fn flavor(id: &str, vcpus: u32, ram_mb: u64, disk_gb: u64) -> FlavorSnapshot {
    FlavorSnapshot {
        spec: FlavorSpec {
            id: FlavorId::new(id).unwrap(),
            name: format!("f{id}"),
            vcpus,
            ram_mb,
            disk_gb,
            ephemeral_gb: 0,
            swap_mb: 0,
            rxtx_factor: 1.0,
            is_public: true,
            description: None,
        },
        extra_specs: BTreeMap::new(),
    }
}

fn instance() -> Instance {
    let spec = InstanceSpec {
        id: InstanceId(Uuid::new_v4()),
        name: "vm".into(),
        description: None,
        project_id: "p".into(),
        user_id: "u".into(),
        flavor: flavor("1", 1, 512, 1),
        image_ref: "cirros".into(),
        boot_from_volume: false,
        metadata: BTreeMap::new(),
        availability_zone: None,
        networks: Networks::None,
        key_name: None,
        requested_host: None,
    };
    instance::evolve(
        None,
        &InstanceEvent::BuildRequested {
            spec: Box::new(spec),
            op: Uuid::from_u128(2),
            at: Timestamp(1),
        },
    )
    .unwrap()
}

/// The driver under test and how to check what it left behind.
struct Subject {
    driver: Box<dyn VirtDriver>,
    guest: GuestContext,
    /// Files left for an instance (always empty for the simulated driver).
    leftovers: Box<dyn Fn(InstanceId) -> Vec<String>>,
    _dir: Option<tempfile::TempDir>,
}

fn sim() -> Subject {
    Subject {
        driver: Box::new(SimDriver::new(SimOptions::default())),
        guest: GuestContext::default(),
        leftovers: Box::new(|_| Vec::new()),
        _dir: None,
    }
}

fn state(s: &Subject, host: &HostName, i: &Instance) -> Option<PowerState> {
    s.driver.domains(host).get(&i.id()).copied()
}

async fn step(s: &Subject, host: &HostName, i: &mut Instance, task: TaskState) {
    s.driver
        .perform(host, i, &s.guest, task)
        .await
        .unwrap_or_else(|e| panic!("{task:?}: {e}"));
    if let Some(p) = state(s, host, i) {
        i.power_state = p;
    }
}

/// A host name of this test only: libvirt's `test:///default` is one state shared by
/// every connection of the process, so tests running at once must not share hosts.
fn unique_host(n: u32) -> HostName {
    let tag = Uuid::new_v4().simple().to_string();
    HostName::new(format!("host{n}-{}", &tag[..8])).unwrap()
}

/// Every lifecycle task, in an order the API allows, with the power state each leaves.
async fn lifecycle(s: &Subject) {
    let host = unique_host(1);
    let mut i = instance();
    use PowerState as P;
    use TaskState as T;
    let plan: &[(TaskState, Option<PowerState>)] = &[
        (T::Spawning, Some(P::Running)),
        // A second spawn (a redelivered task) finds the running guest.
        (T::Spawning, Some(P::Running)),
        (T::PoweringOff, Some(P::Shutdown)),
        (T::PoweringOn, Some(P::Running)),
        (T::Rebooting, Some(P::Running)),
        (T::RebootingHard, Some(P::Running)),
        (T::Pausing, Some(P::Paused)),
        (T::Unpausing, Some(P::Running)),
        (T::Suspending, Some(P::Suspended)),
        (T::Resuming, Some(P::Running)),
        (T::Rescuing, Some(P::Running)),
        (T::Unrescuing, Some(P::Running)),
        (T::ImageSnapshot, Some(P::Running)),
        (T::SoftDeleting, Some(P::Shutdown)),
        (T::Restoring, Some(P::Running)),
        (T::Shelving, Some(P::Shutdown)),
        (T::ShelvingImageUploading, Some(P::Shutdown)),
        (T::ShelvingOffloading, None),
        (T::Unshelving, Some(P::Running)),
        (T::Rebuilding, None),
        (T::RebuildBlockDeviceMapping, None),
        (T::RebuildSpawning, Some(P::Running)),
    ];
    for (task, want) in plan {
        step(s, &host, &mut i, *task).await;
        assert_eq!(state(s, &host, &i), *want, "after {task:?}");
        assert!(
            s.driver.domains(&host).len() <= 1,
            "one guest at most after {task:?}"
        );
    }
    // Resize to a bigger flavor, then revert; a cold migration to another host.
    let host2 = unique_host(2);
    i.migration = Some(Migration {
        id: MigrationId(Uuid::new_v4()),
        kind: MigrationKind::Resize,
        source_host: host.clone(),
        source_claim: None,
        dest_host: Some(host.clone()),
        dest_claim: None,
        requested_host: None,
        old_flavor: flavor("1", 1, 512, 1),
        new_flavor: flavor("2", 2, 1024, 2),
        old_vm_state: domain::VmState::Active,
        old_power_state: P::Running,
    });
    step(s, &host, &mut i, T::ResizeMigrating).await;
    assert_eq!(state(s, &host, &i), Some(P::Running), "resized");
    step(s, &host, &mut i, T::ResizeReverting).await;
    assert_eq!(state(s, &host, &i), Some(P::Running), "reverted");
    // A cold migration to another host, then a live one back.
    if let Some(m) = i.migration.as_mut() {
        m.kind = MigrationKind::Migration;
        m.new_flavor = m.old_flavor.clone();
        m.dest_host = Some(host2.clone());
    }
    step(s, &host, &mut i, T::ResizeMigrating).await;
    assert_eq!(state(s, &host2, &i), Some(P::Running), "migrated");
    assert_eq!(state(s, &host, &i), None, "not on the source any more");
    if let Some(m) = i.migration.as_mut() {
        m.kind = MigrationKind::LiveMigration;
        m.source_host = host2.clone();
        m.dest_host = Some(host.clone());
    }
    step(s, &host2, &mut i, T::Pausing).await;
    step(s, &host2, &mut i, T::Migrating).await;
    assert_eq!(state(s, &host, &i), Some(P::Paused), "live: still paused");
    assert_eq!(state(s, &host2, &i), None, "live: not on the source");
    step(s, &host, &mut i, T::Unpausing).await;
    if let Some(m) = i.migration.as_mut() {
        m.kind = MigrationKind::Migration;
        m.source_host = host.clone();
        m.dest_host = Some(host2.clone());
    }
    step(s, &host, &mut i, T::ResizeMigrating).await;
    assert_eq!(state(s, &host2, &i), Some(P::Running), "migrated again");
    i.migration = None;
    // Stopped, then resized: it stays off.
    step(s, &host2, &mut i, T::PoweringOff).await;
    i.migration = Some(Migration {
        id: MigrationId(Uuid::new_v4()),
        kind: MigrationKind::Resize,
        source_host: host2.clone(),
        source_claim: None,
        dest_host: Some(host2.clone()),
        dest_claim: None,
        requested_host: None,
        old_flavor: flavor("1", 1, 512, 1),
        new_flavor: flavor("2", 2, 1024, 2),
        old_vm_state: domain::VmState::Stopped,
        old_power_state: P::Shutdown,
    });
    step(s, &host2, &mut i, T::ResizeMigrating).await;
    assert_eq!(
        state(s, &host2, &i),
        Some(P::Shutdown),
        "a stopped server stays off"
    );
    i.migration = None;
    step(s, &host2, &mut i, T::Deleting).await;
    assert_eq!(state(s, &host2, &i), None, "deleted");
    assert!(s.driver.domains(&host2).is_empty());
    assert_eq!((s.leftovers)(i.id()), Vec::<String>::new(), "no files left");
    // Deleting again (a redelivered task) is fine.
    step(s, &host2, &mut i, T::Deleting).await;
}

#[tokio::test]
async fn the_simulated_driver_conforms() {
    lifecycle(&sim()).await;
}

#[tokio::test]
async fn the_simulated_driver_fails_injected_tasks() {
    let d = SimDriver::new(SimOptions {
        fail_tasks: [TaskState::PoweringOff].into(),
        ..SimOptions::default()
    });
    let host = HostName::new("host1").unwrap();
    let i = instance();
    d.perform(&host, &i, &GuestContext::default(), TaskState::Spawning)
        .await
        .unwrap();
    assert!(d
        .perform(&host, &i, &GuestContext::default(), TaskState::PoweringOff)
        .await
        .is_err());
    assert_eq!(d.console_output(i.id()), None);
}

#[cfg(feature = "libvirt")]
mod libvirt {
    use super::*;
    use compute::libvirt::{LibvirtDriver, LibvirtOptions};
    use compute::{GuestNic, ImageFile};
    use std::process::Command;

    /// The libvirt driver on `test:///default`, its instances directory in a temporary
    /// directory, booting from a tiny qcow2 image with one NIC.
    fn subject() -> (Subject, LibvirtDriver) {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image.qcow2");
        let made = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&image)
            .arg("1M")
            .status()
            .expect("qemu-img (qemu-utils) is installed");
        assert!(made.success());
        let opts = LibvirtOptions::new("test:///default", dir.path().join("instances"));
        let driver = LibvirtDriver::connect(opts).unwrap();
        let guest = GuestContext {
            image: Some(ImageFile {
                path: image.clone(),
                disk_format: "qcow2".into(),
            }),
            rescue: Some(ImageFile {
                path: image,
                disk_format: "qcow2".into(),
            }),
            nics: vec![GuestNic {
                port_id: Uuid::new_v4().to_string(),
                mac: "fa:16:3e:12:34:56".into(),
                network_id: Uuid::new_v4().to_string(),
            }],
            ..GuestContext::default()
        };
        let d2 = driver.clone();
        let subject = Subject {
            driver: Box::new(driver.clone()),
            guest,
            leftovers: Box::new(move |id| {
                let dir = d2.instance_dir(id);
                let mut left = Vec::new();
                if dir.exists() {
                    left.push(dir.display().to_string());
                }
                if d2.domain_state(id).is_some() {
                    left.push(format!("domain of {id}"));
                }
                left
            }),
            _dir: Some(dir),
        };
        (subject, driver)
    }

    #[tokio::test]
    async fn the_libvirt_driver_conforms() {
        let (s, _) = subject();
        lifecycle(&s).await;
    }

    #[tokio::test]
    async fn a_spawn_writes_the_overlay_and_the_domain_from_the_flavor() {
        let (s, d) = subject();
        let host = unique_host(1);
        let i = instance();
        s.driver
            .perform(&host, &i, &s.guest, TaskState::Spawning)
            .await
            .unwrap();
        let dir = d.instance_dir(i.id());
        assert!(dir.join("disk").is_file(), "the root disk overlay");
        let xml = d.domain_xml_of(i.id()).unwrap();
        assert!(xml.contains(&format!("<name>instance-{}</name>", i.id())));
        assert!(xml.contains("<vcpu placement='static'>1</vcpu>"), "{xml}");
        assert!(xml.contains("fa:16:3e:12:34:56"));
        // Twice: still one domain.
        s.driver
            .perform(&host, &i, &s.guest, TaskState::Spawning)
            .await
            .unwrap();
        assert_eq!(s.driver.domains(&host).len(), 1);
        assert_eq!(d.domain_state(i.id()), Some(PowerState::Running));
        assert_eq!(s.driver.console_output(i.id()), None, "nothing written yet");
        std::fs::write(dir.join("console.log"), "login: ").unwrap();
        assert_eq!(s.driver.console_output(i.id()).as_deref(), Some("login: "));
        s.driver
            .perform(&host, &i, &s.guest, TaskState::Deleting)
            .await
            .unwrap();
        assert!(!dir.exists());
    }

    #[tokio::test]
    async fn libvirt_errors_are_errors_with_libvirts_message() {
        let (s, _) = subject();
        let host = unique_host(1);
        let i = instance();
        let e = s
            .driver
            .perform(&host, &i, &s.guest, TaskState::PoweringOn)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Domain not found"), "{e}");
        let e = s
            .driver
            .perform(&host, &i, &s.guest, TaskState::UpdatingPassword)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "set_admin_password is not implemented by this driver or guest instance."
        );
        // A missing image file: the overlay cannot be made.
        let mut guest = s.guest.clone();
        guest.image.as_mut().unwrap().path = "/nonexistent/image".into();
        // (not a file: booted without a root disk, as a kernel-only boot would be)
        s.driver
            .perform(&host, &i, &guest, TaskState::Spawning)
            .await
            .unwrap();
        // Pausing a guest that is not running is libvirt's error.
        s.driver
            .perform(&host, &i, &guest, TaskState::PoweringOff)
            .await
            .unwrap();
        let e = s
            .driver
            .perform(&host, &i, &guest, TaskState::Pausing)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not running"), "{e}");
        s.driver
            .perform(&host, &i, &guest, TaskState::Deleting)
            .await
            .unwrap();
    }
}

/// A real QEMU guest by direct kernel boot, when asked for: `STRATUS_SMOKE_KERNEL=<vmlinuz>`
/// (and a running libvirtd; `cargo test -p compute --features libvirt --test conformance
/// -- --ignored`). The kernel alone panics for want of a root file system, after printing
/// its boot log to the serial console file: enough to prove the domain XML boots.
#[cfg(feature = "libvirt")]
#[tokio::test]
#[ignore]
async fn a_real_guest_boots_its_kernel_and_logs_to_the_console_file() {
    use compute::libvirt::{LibvirtDriver, LibvirtOptions};
    let kernel = std::env::var("STRATUS_SMOKE_KERNEL").expect("STRATUS_SMOKE_KERNEL");
    let uri = std::env::var("STRATUS_SMOKE_URI").unwrap_or_else(|_| "qemu:///system".into());
    // qemu runs as another user: a directory it can traverse.
    let dir = std::path::PathBuf::from(format!("/tmp/stratus-smoke-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut opts = LibvirtOptions::new(uri, dir.join("instances"));
    opts.shutdown_timeout = std::time::Duration::from_secs(2);
    let d = LibvirtDriver::connect(opts).unwrap();
    let guest = GuestContext {
        kernel: Some(kernel.into()),
        cmdline: Some("console=ttyS0 panic=-1".into()),
        ..GuestContext::default()
    };
    let host = unique_host(1);
    let i = instance();
    d.perform(&host, &i, &guest, TaskState::Spawning)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut out = String::new();
    while std::time::Instant::now() < deadline {
        out = d.console_output(i.id()).unwrap_or_default();
        if out.contains("Linux version") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let deleted = d.perform(&host, &i, &guest, TaskState::Deleting).await;
    let _ = std::fs::remove_dir_all(&dir);
    deleted.unwrap();
    assert!(out.contains("Linux version"), "console: {out}");
    assert!(!d.instance_dir(i.id()).exists());
    assert_eq!(d.domain_state(i.id()), None);
}
