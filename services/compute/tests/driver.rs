//! The simulated driver applies each task to its table of domains.

use std::collections::BTreeMap;

use compute::{SimDriver, SimOptions, VirtDriver};
use domain::flavor::FlavorSpec;
use domain::instance::{self, FlavorSnapshot, Instance, InstanceEvent, InstanceSpec, Networks};
use domain::{FlavorId, HostName, InstanceId, PowerState, TaskState, Timestamp, VmState};
use uuid::Uuid;

fn instance(vm_state: VmState) -> Instance {
    let spec = InstanceSpec {
        id: InstanceId(Uuid::from_u128(1)),
        name: "vm".into(),
        description: None,
        project_id: "p".into(),
        user_id: "u".into(),
        flavor: FlavorSnapshot {
            spec: FlavorSpec {
                id: FlavorId::new("1").unwrap(),
                name: "tiny".into(),
                vcpus: 1,
                ram_mb: 512,
                disk_gb: 1,
                ephemeral_gb: 0,
                swap_mb: 0,
                rxtx_factor: 1.0,
                is_public: true,
                description: None,
            },
            extra_specs: BTreeMap::new(),
        },
        image_ref: "cirros".into(),
        boot_from_volume: false,
        metadata: BTreeMap::new(),
        availability_zone: None,
        networks: Networks::None,
        key_name: None,
        requested_host: None,
    };
    let mut i = instance::evolve(
        None,
        &InstanceEvent::BuildRequested {
            spec: Box::new(spec),
            op: Uuid::from_u128(2),
            at: Timestamp(1),
        },
    )
    .unwrap();
    i.vm_state = vm_state;
    i
}

async fn rebuild(driver: &SimDriver, host: &HostName, i: &Instance) {
    for task in [
        TaskState::Rebuilding,
        TaskState::RebuildBlockDeviceMapping,
        TaskState::RebuildSpawning,
    ] {
        driver
            .perform(host, i, &Default::default(), task)
            .await
            .unwrap();
        if task == TaskState::Rebuilding {
            assert!(
                driver.domains(host).is_empty(),
                "the old guest is destroyed"
            );
        }
    }
}

#[tokio::test]
async fn rebuild_boots_the_new_guest_running_or_keeps_a_stopped_one_off() {
    let host = HostName::new("host1").unwrap();
    let driver = SimDriver::new(SimOptions::default());
    let active = instance(VmState::Active);
    driver
        .perform(&host, &active, &Default::default(), TaskState::Spawning)
        .await
        .unwrap();
    rebuild(&driver, &host, &active).await;
    assert_eq!(
        driver.domains(&host).get(&active.id()),
        Some(&PowerState::Running)
    );
    rebuild(&driver, &host, &instance(VmState::Error)).await;
    assert_eq!(
        driver.domains(&host).get(&active.id()),
        Some(&PowerState::Running)
    );
    let stopped = instance(VmState::Stopped);
    rebuild(&driver, &host, &stopped).await;
    assert_eq!(
        driver.domains(&host).get(&stopped.id()),
        Some(&PowerState::Shutdown)
    );
}

#[tokio::test]
async fn an_injected_rebuild_failure_is_an_error() {
    let host = HostName::new("host1").unwrap();
    let driver = SimDriver::new(SimOptions {
        fail_tasks: [TaskState::RebuildSpawning].into(),
        ..SimOptions::default()
    });
    let i = instance(VmState::Active);
    driver
        .perform(&host, &i, &Default::default(), TaskState::Rebuilding)
        .await
        .unwrap();
    let e = driver
        .perform(&host, &i, &Default::default(), TaskState::RebuildSpawning)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "simulated failure of rebuild_spawning on host1"
    );
}
