//! Nova's flavor extra-spec validation (microversion 2.86+): the extra specs Nova knows,
//! as data, and [`validate`], which checks a key and value against them.
//!
//! Invariants (as Nova's `nova.api.validation.extra_specs.validators.validate`):
//! - a key that names a known spec (exactly, or through the spec's name pattern, such as
//!   `hw:numa_cpus.{num}`) must have a value of the spec's kind: an integer within its
//!   bounds, a boolean-like string, a string matching its pattern or one of its values;
//! - an unknown key in a known namespace (`hw:`, `resources1:`, `trait:`, ...) is
//!   refused; a key with an unknown namespace, or none, is accepted as it is;
//! - refusals are Nova's 400 messages (`Validation failed; ...`).
//!
//! [`KNOWN`] is Nova's validator list (nova commit 00a030403f, `nova/api/validation/
//! extra_specs/*.py`) and [`TRAITS`] / [`RESOURCE_CLASSES`] are os-traits' and
//! os-resource-classes' standard names, which Nova turns into one spec each
//! (`trait{group}:<TRAIT>`: `required` or `forbidden`; `resources{group}:<CLASS>`: an
//! integer), plus their `CUSTOM_` forms. A spec's `regex` is its name with each
//! parameter replaced by the parameter's pattern, unescaped, exactly as Nova builds it.

use std::sync::LazyLock;

use regex::Regex;

use crate::error::ApiError;

/// What a known spec's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRule {
    /// Any string.
    Any,
    /// An integer (as Python's `int()` reads it), within the bounds.
    Int { min: Option<i64>, max: Option<i64> },
    /// A boolean-like string (`true`, `1`, `yes`, `off`, ...).
    Bool,
    /// A string matching the pattern as a whole.
    Pattern(&'static str),
    /// One of these strings.
    Enum(&'static [&'static str]),
}

/// One spec Nova knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// Nova's name for it, with `{parameter}` placeholders.
    pub name: &'static str,
    /// The name as a pattern when it has parameters.
    pub regex: Option<&'static str>,
    pub value: ValueRule,
}

use ValueRule::{Any, Bool, Enum, Int, Pattern};

/// Nova's known extra specs but the trait and resource ones.
pub const KNOWN: &[Known] = &[
    Known {
        name: "accel:device_profile",
        regex: None,
        value: Any,
    },
    Known {
        name: "aggregate_instance_extra_specs:{key}",
        regex: Some(r"aggregate_instance_extra_specs:(?P<key>.+)"),
        value: Any,
    },
    Known {
        name: "capabilities:id",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:uuid",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:service_id",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:host",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:vcpus",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:memory_mb",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:local_gb",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:vcpus_used",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:memory_mb_used",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:local_gb_used",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:hypervisor_type",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:hypervisor_version",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:hypervisor_hostname",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:free_ram_mb",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:free_disk_gb",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:current_workload",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:running_vms",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:disk_available_least",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:host_ip",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:mapped",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:cpu_allocation_ratio",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:ram_allocation_ratio",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:disk_allocation_ratio",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:total_usable_ram_mb",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:total_usable_disk_gb",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:disk_mb_used",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:free_disk_mb",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:vcpus_total",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:num_instances",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:num_io_ops",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:failed_builds",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:aggregates",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:cell_uuid",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:updated",
        regex: None,
        value: Any,
    },
    Known {
        name: "capabilities:cpu_info{filter}",
        regex: Some(r"capabilities:cpu_info(?P<filter>(:\w+)*)"),
        value: Any,
    },
    Known {
        name: "capabilities:metrics{filter}",
        regex: Some(r"capabilities:metrics(?P<filter>(:\w+)*)"),
        value: Any,
    },
    Known {
        name: "capabilities:stats{filter}",
        regex: Some(r"capabilities:stats(?P<filter>(:\w+)*)"),
        value: Any,
    },
    Known {
        name: "capabilities:numa_topology{filter}",
        regex: Some(r"capabilities:numa_topology(?P<filter>(:\w+)*)"),
        value: Any,
    },
    Known {
        name: "capabilities:supported_hv_specs{filter}",
        regex: Some(r"capabilities:supported_hv_specs(?P<filter>(:\w+)*)"),
        value: Any,
    },
    Known {
        name: "capabilities:pci_device_pools{filter}",
        regex: Some(r"capabilities:pci_device_pools(?P<filter>(:\w+)*)"),
        value: Any,
    },
    Known {
        name: "capabilities:nodename{filter}",
        regex: Some(r"capabilities:nodename(?P<filter>(:\w+)*)"),
        value: Any,
    },
    Known {
        name: "capabilities:pci_stats{filter}",
        regex: Some(r"capabilities:pci_stats(?P<filter>(:\w+)*)"),
        value: Any,
    },
    Known {
        name: "capabilities:supported_instances{filter}",
        regex: Some(r"capabilities:supported_instances(?P<filter>(:\w+)*)"),
        value: Any,
    },
    Known {
        name: "capabilities:limits{filter}",
        regex: Some(r"capabilities:limits(?P<filter>(:\w+)*)"),
        value: Any,
    },
    Known {
        name: "capabilities:instances{filter}",
        regex: Some(r"capabilities:instances(?P<filter>(:\w+)*)"),
        value: Any,
    },
    Known {
        name: "hw:cpu_realtime",
        regex: None,
        value: Bool,
    },
    Known {
        name: "hw:cpu_realtime_mask",
        regex: None,
        value: Pattern(r"(\^)?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*"),
    },
    Known {
        name: "hw:hide_hypervisor_id",
        regex: None,
        value: Bool,
    },
    Known {
        name: "hw:cpu_policy",
        regex: None,
        value: Enum(&["dedicated", "shared", "mixed"]),
    },
    Known {
        name: "hw:cpu_thread_policy",
        regex: None,
        value: Enum(&["prefer", "isolate", "require"]),
    },
    Known {
        name: "hw:emulator_threads_policy",
        regex: None,
        value: Enum(&["isolate", "share"]),
    },
    Known {
        name: "hw:cpu_dedicated_mask",
        regex: None,
        value: Pattern(r"\^?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*"),
    },
    Known {
        name: "hw:mem_page_size",
        regex: None,
        value: Pattern(r"(large|small|any|\d+([kKMGT]i?)?(b|bit|B)?)"),
    },
    Known {
        name: "hw:locked_memory",
        regex: None,
        value: Bool,
    },
    Known {
        name: "hw:numa_nodes",
        regex: None,
        value: Int {
            min: Some(1),
            max: None,
        },
    },
    Known {
        name: "hw:numa_cpus.{num}",
        regex: Some(r"hw:numa_cpus.(?P<num>\d+)"),
        value: Pattern(r"\^?\d+((-\d+)?(,\^?\d+(-\d+)?)?)*"),
    },
    Known {
        name: "hw:numa_mem.{num}",
        regex: Some(r"hw:numa_mem.(?P<num>\d+)"),
        value: Int {
            min: Some(1),
            max: None,
        },
    },
    Known {
        name: "hw:pci_numa_affinity_policy",
        regex: None,
        value: Enum(&["required", "preferred", "legacy", "socket"]),
    },
    Known {
        name: "hw:cpu_sockets",
        regex: None,
        value: Int {
            min: Some(1),
            max: None,
        },
    },
    Known {
        name: "hw:cpu_cores",
        regex: None,
        value: Int {
            min: Some(1),
            max: None,
        },
    },
    Known {
        name: "hw:cpu_threads",
        regex: None,
        value: Int {
            min: Some(1),
            max: None,
        },
    },
    Known {
        name: "hw:cpu_max_sockets",
        regex: None,
        value: Int {
            min: Some(1),
            max: None,
        },
    },
    Known {
        name: "hw:cpu_max_cores",
        regex: None,
        value: Int {
            min: Some(1),
            max: None,
        },
    },
    Known {
        name: "hw:cpu_max_threads",
        regex: None,
        value: Int {
            min: Some(1),
            max: None,
        },
    },
    Known {
        name: "hw:boot_menu",
        regex: None,
        value: Bool,
    },
    Known {
        name: "hw:vif_multiqueue_enabled",
        regex: None,
        value: Bool,
    },
    Known {
        name: "hw:mem_encryption",
        regex: None,
        value: Bool,
    },
    Known {
        name: "hw:mem_encryption_model",
        regex: None,
        value: Enum(&["amd-sev", "amd-sev-es", "amd-sev-snp"]),
    },
    Known {
        name: "hw:pmem",
        regex: None,
        value: Pattern(r"([a-zA-Z0-9_]+(,)?)+"),
    },
    Known {
        name: "hw:pmu",
        regex: None,
        value: Bool,
    },
    Known {
        name: "hw:serial_port_count",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "hw:tpm_model",
        regex: None,
        value: Enum(&["tpm-tis", "tpm-crb"]),
    },
    Known {
        name: "hw:tpm_version",
        regex: None,
        value: Enum(&["1.2", "2.0"]),
    },
    Known {
        name: "hw:tpm_secret_security",
        regex: None,
        value: Enum(&["user", "host", "deployment"]),
    },
    Known {
        name: "hw:watchdog_action",
        regex: None,
        value: Enum(&["none", "pause", "poweroff", "reset", "disabled"]),
    },
    Known {
        name: "hw:viommu_model",
        regex: None,
        value: Enum(&["intel", "smmuv3", "virtio", "auto"]),
    },
    Known {
        name: "hw:virtio_packed_ring",
        regex: None,
        value: Bool,
    },
    Known {
        name: "hw:sound_model",
        regex: None,
        value: Enum(&[
            "sb16", "es1370", "pcspk", "ac97", "ich6", "ich9", "usb", "virtio",
        ]),
    },
    Known {
        name: "hw:usb_model",
        regex: None,
        value: Enum(&["none", "nec-xhci", "qemu-xhci"]),
    },
    Known {
        name: "hw:redirected_usb_ports",
        regex: None,
        value: Int {
            min: Some(0),
            max: Some(15),
        },
    },
    Known {
        name: "hw:ephemeral_encryption",
        regex: None,
        value: Bool,
    },
    Known {
        name: "hw:ephemeral_encryption_format",
        regex: None,
        value: Enum(&["plain", "luks", "luksv2"]),
    },
    Known {
        name: "hw_rng:allowed",
        regex: None,
        value: Bool,
    },
    Known {
        name: "hw_rng:rate_bytes",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "hw_rng:rate_period",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "hw_video:ram_max_mb",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "hide_hypervisor_id",
        regex: None,
        value: Bool,
    },
    Known {
        name: "group_policy",
        regex: None,
        value: Enum(&["isolate", "none"]),
    },
    Known {
        name: "os:secure_boot",
        regex: None,
        value: Enum(&["disabled", "required"]),
    },
    Known {
        name: "pci_passthrough:alias",
        regex: None,
        value: Pattern(r"[^:]+:\d+(?:\s*,\s*[^:]+:\d+)*"),
    },
    Known {
        name: "quota:cpu_limit",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:cpu_reservation",
        regex: None,
        value: Int {
            min: None,
            max: None,
        },
    },
    Known {
        name: "quota:cpu_shares_level",
        regex: None,
        value: Enum(&["custom", "high", "normal", "low"]),
    },
    Known {
        name: "quota:cpu_shares_share",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:memory_limit",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:memory_reservation",
        regex: None,
        value: Int {
            min: None,
            max: None,
        },
    },
    Known {
        name: "quota:memory_shares_level",
        regex: None,
        value: Enum(&["custom", "high", "normal", "low"]),
    },
    Known {
        name: "quota:memory_shares_share",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:disk_io_limit",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:disk_io_reservation",
        regex: None,
        value: Int {
            min: None,
            max: None,
        },
    },
    Known {
        name: "quota:disk_io_shares_level",
        regex: None,
        value: Enum(&["custom", "high", "normal", "low"]),
    },
    Known {
        name: "quota:disk_io_shares_share",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:vif_limit",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:vif_reservation",
        regex: None,
        value: Int {
            min: None,
            max: None,
        },
    },
    Known {
        name: "quota:vif_shares_level",
        regex: None,
        value: Enum(&["custom", "high", "normal", "low"]),
    },
    Known {
        name: "quota:vif_shares_share",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:cpu_shares",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:cpu_period",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:cpu_quota",
        regex: None,
        value: Int {
            min: None,
            max: None,
        },
    },
    Known {
        name: "quota:disk_read_bytes_sec",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:disk_read_iops_sec",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:disk_write_bytes_sec",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:disk_write_iops_sec",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:disk_total_bytes_sec",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:disk_total_iops_sec",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:vif_inbound_average",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:vif_inbound_peak",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:vif_inbound_burst",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:vif_outbound_average",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:vif_outbound_peak",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "quota:vif_outbound_burst",
        regex: None,
        value: Int {
            min: Some(0),
            max: None,
        },
    },
    Known {
        name: "vmware:hw_version",
        regex: None,
        value: Any,
    },
    Known {
        name: "vmware:storage_policy",
        regex: None,
        value: Any,
    },
];

/// Namespaces of known specs (patterns): an unknown key in one of them is refused.
pub const NAMESPACES: &[&str] = &[
    r"accel",
    r"aggregate_instance_extra_specs",
    r"capabilities",
    r"hw",
    r"hw_rng",
    r"hw_video",
    r"os",
    r"pci_passthrough",
    r"quota",
    r"resources(?P<group>([a-zA-Z0-9_-]{1,64})?)",
    r"trait(?P<group>([a-zA-Z0-9_-]{1,64})?)",
    r"vmware",
];

/// The request-group suffix of `trait` and `resources` keys (`resources1:VCPU`).
const GROUP: &str = r"([a-zA-Z0-9_-]{1,64})?";

/// os-traits' standard traits.
pub const TRAITS: &[&str] = &[
    "COMPUTE_ACCELERATORS",
    "COMPUTE_ADDRESS_SPACE_EMULATED",
    "COMPUTE_ADDRESS_SPACE_PASSTHROUGH",
    "COMPUTE_ARCH_AARCH64",
    "COMPUTE_ARCH_MIPSEL",
    "COMPUTE_ARCH_PPC64LE",
    "COMPUTE_ARCH_RISCV64",
    "COMPUTE_ARCH_S390X",
    "COMPUTE_ARCH_X86_64",
    "COMPUTE_CONFIG_DRIVE_REGENERATION",
    "COMPUTE_DEVICE_TAGGING",
    "COMPUTE_EPHEMERAL_ENCRYPTION",
    "COMPUTE_EPHEMERAL_ENCRYPTION_LUKS",
    "COMPUTE_EPHEMERAL_ENCRYPTION_LUKSV2",
    "COMPUTE_EPHEMERAL_ENCRYPTION_PLAIN",
    "COMPUTE_FIRMWARE_BIOS",
    "COMPUTE_FIRMWARE_UEFI",
    "COMPUTE_GRAPHICS_MODEL_BOCHS",
    "COMPUTE_GRAPHICS_MODEL_CIRRUS",
    "COMPUTE_GRAPHICS_MODEL_GOP",
    "COMPUTE_GRAPHICS_MODEL_NONE",
    "COMPUTE_GRAPHICS_MODEL_QXL",
    "COMPUTE_GRAPHICS_MODEL_VGA",
    "COMPUTE_GRAPHICS_MODEL_VIRTIO",
    "COMPUTE_GRAPHICS_MODEL_VMVGA",
    "COMPUTE_GRAPHICS_MODEL_XEN",
    "COMPUTE_IMAGE_TYPE_AKI",
    "COMPUTE_IMAGE_TYPE_AMI",
    "COMPUTE_IMAGE_TYPE_ARI",
    "COMPUTE_IMAGE_TYPE_ISO",
    "COMPUTE_IMAGE_TYPE_PLOOP",
    "COMPUTE_IMAGE_TYPE_QCOW2",
    "COMPUTE_IMAGE_TYPE_RAW",
    "COMPUTE_IMAGE_TYPE_VDI",
    "COMPUTE_IMAGE_TYPE_VHD",
    "COMPUTE_IMAGE_TYPE_VHDX",
    "COMPUTE_IMAGE_TYPE_VMDK",
    "COMPUTE_MANAGED_PCI_DEVICE",
    "COMPUTE_MEM_BACKING_FILE",
    "COMPUTE_MIGRATE_AUTO_CONVERGE",
    "COMPUTE_MIGRATE_POST_COPY",
    "COMPUTE_NET_ATTACH_INTERFACE",
    "COMPUTE_NET_ATTACH_INTERFACE_WITH_TAG",
    "COMPUTE_NET_VIF_MODEL_E1000",
    "COMPUTE_NET_VIF_MODEL_E1000E",
    "COMPUTE_NET_VIF_MODEL_IGB",
    "COMPUTE_NET_VIF_MODEL_LAN9118",
    "COMPUTE_NET_VIF_MODEL_NE2K_PCI",
    "COMPUTE_NET_VIF_MODEL_NETFRONT",
    "COMPUTE_NET_VIF_MODEL_PCNET",
    "COMPUTE_NET_VIF_MODEL_RTL8139",
    "COMPUTE_NET_VIF_MODEL_SPAPR_VLAN",
    "COMPUTE_NET_VIF_MODEL_SRIOV",
    "COMPUTE_NET_VIF_MODEL_VIRTIO",
    "COMPUTE_NET_VIF_MODEL_VMXNET",
    "COMPUTE_NET_VIF_MODEL_VMXNET3",
    "COMPUTE_NET_VIRTIO_PACKED",
    "COMPUTE_NODE",
    "COMPUTE_REMOTE_MANAGED_PORTS",
    "COMPUTE_RESCUE_BFV",
    "COMPUTE_SAME_HOST_COLD_MIGRATE",
    "COMPUTE_SECURITY_STATELESS_FIRMWARE",
    "COMPUTE_SECURITY_TPM_1_2",
    "COMPUTE_SECURITY_TPM_2_0",
    "COMPUTE_SECURITY_TPM_CRB",
    "COMPUTE_SECURITY_TPM_SECRET_SECURITY_DEPLOYMENT",
    "COMPUTE_SECURITY_TPM_SECRET_SECURITY_HOST",
    "COMPUTE_SECURITY_TPM_SECRET_SECURITY_USER",
    "COMPUTE_SECURITY_TPM_TIS",
    "COMPUTE_SECURITY_UEFI_SECURE_BOOT",
    "COMPUTE_SHARE_LOCAL_FS",
    "COMPUTE_SOCKET_PCI_NUMA_AFFINITY",
    "COMPUTE_SOUND_MODEL_AC97",
    "COMPUTE_SOUND_MODEL_ES1370",
    "COMPUTE_SOUND_MODEL_ICH6",
    "COMPUTE_SOUND_MODEL_ICH9",
    "COMPUTE_SOUND_MODEL_PCSPK",
    "COMPUTE_SOUND_MODEL_SB16",
    "COMPUTE_SOUND_MODEL_USB",
    "COMPUTE_SOUND_MODEL_VIRTIO",
    "COMPUTE_STATUS_DISABLED",
    "COMPUTE_STORAGE_BUS_FDC",
    "COMPUTE_STORAGE_BUS_IDE",
    "COMPUTE_STORAGE_BUS_LXC",
    "COMPUTE_STORAGE_BUS_SATA",
    "COMPUTE_STORAGE_BUS_SCSI",
    "COMPUTE_STORAGE_BUS_UML",
    "COMPUTE_STORAGE_BUS_USB",
    "COMPUTE_STORAGE_BUS_VIRTIO",
    "COMPUTE_STORAGE_BUS_XEN",
    "COMPUTE_STORAGE_VIRTIO_FS",
    "COMPUTE_TRUSTED_CERTS",
    "COMPUTE_USB_MODEL_NEC_XHCI",
    "COMPUTE_USB_MODEL_QEMU_XHCI",
    "COMPUTE_VIOMMU_MODEL_AUTO",
    "COMPUTE_VIOMMU_MODEL_INTEL",
    "COMPUTE_VIOMMU_MODEL_SMMUV3",
    "COMPUTE_VIOMMU_MODEL_VIRTIO",
    "COMPUTE_VOLUME_ATTACH",
    "COMPUTE_VOLUME_ATTACH_WITH_TAG",
    "COMPUTE_VOLUME_EXTEND",
    "COMPUTE_VOLUME_MULTI_ATTACH",
    "HW_ARCH_AARCH64",
    "HW_ARCH_ALPHA",
    "HW_ARCH_ARMV6",
    "HW_ARCH_ARMV7",
    "HW_ARCH_ARMV7B",
    "HW_ARCH_CRIS",
    "HW_ARCH_I686",
    "HW_ARCH_IA64",
    "HW_ARCH_LM32",
    "HW_ARCH_M68K",
    "HW_ARCH_MICROBLAZE",
    "HW_ARCH_MICROBLAZEEL",
    "HW_ARCH_MIPS",
    "HW_ARCH_MIPS64",
    "HW_ARCH_MIPS64EL",
    "HW_ARCH_MIPSEL",
    "HW_ARCH_OPENRISC",
    "HW_ARCH_PARISC",
    "HW_ARCH_PARISC64",
    "HW_ARCH_PPC",
    "HW_ARCH_PPC64",
    "HW_ARCH_PPC64LE",
    "HW_ARCH_PPCEMB",
    "HW_ARCH_PPCLE",
    "HW_ARCH_S390",
    "HW_ARCH_S390X",
    "HW_ARCH_SH4",
    "HW_ARCH_SH4EB",
    "HW_ARCH_SPARC",
    "HW_ARCH_SPARC64",
    "HW_ARCH_UNICORE32",
    "HW_ARCH_X86_64",
    "HW_ARCH_XTENSA",
    "HW_ARCH_XTENSAEB",
    "HW_CPU_AARCH64_AES",
    "HW_CPU_AARCH64_ASIMD",
    "HW_CPU_AARCH64_ASIMDDP",
    "HW_CPU_AARCH64_ASIMDHP",
    "HW_CPU_AARCH64_ASIMDRDM",
    "HW_CPU_AARCH64_ATOMICS",
    "HW_CPU_AARCH64_CPUID",
    "HW_CPU_AARCH64_CRC32",
    "HW_CPU_AARCH64_DCPOP",
    "HW_CPU_AARCH64_EVTSTRM",
    "HW_CPU_AARCH64_FCMA",
    "HW_CPU_AARCH64_FP",
    "HW_CPU_AARCH64_FPHP",
    "HW_CPU_AARCH64_JSCVT",
    "HW_CPU_AARCH64_LRCPC",
    "HW_CPU_AARCH64_PMULL",
    "HW_CPU_AARCH64_SHA1",
    "HW_CPU_AARCH64_SHA2",
    "HW_CPU_AARCH64_SHA3",
    "HW_CPU_AARCH64_SHA512",
    "HW_CPU_AARCH64_SM3",
    "HW_CPU_AARCH64_SM4",
    "HW_CPU_AARCH64_SVE",
    "HW_CPU_AMD_SEV",
    "HW_CPU_HYPERTHREADING",
    "HW_CPU_PPC64LE_POWER8",
    "HW_CPU_PPC64LE_POWER9",
    "HW_CPU_X86_3DNOW",
    "HW_CPU_X86_ABM",
    "HW_CPU_X86_AESNI",
    "HW_CPU_X86_AMD_IBPB",
    "HW_CPU_X86_AMD_NO_SSB",
    "HW_CPU_X86_AMD_SEV",
    "HW_CPU_X86_AMD_SEV_ES",
    "HW_CPU_X86_AMD_SEV_SNP",
    "HW_CPU_X86_AMD_SSBD",
    "HW_CPU_X86_AMD_SVM",
    "HW_CPU_X86_AMD_VIRT_SSBD",
    "HW_CPU_X86_AMXBF16",
    "HW_CPU_X86_AMXINT8",
    "HW_CPU_X86_AMXTILE",
    "HW_CPU_X86_ASF",
    "HW_CPU_X86_AVX",
    "HW_CPU_X86_AVX2",
    "HW_CPU_X86_AVX512BITALG",
    "HW_CPU_X86_AVX512BW",
    "HW_CPU_X86_AVX512CD",
    "HW_CPU_X86_AVX512DQ",
    "HW_CPU_X86_AVX512ER",
    "HW_CPU_X86_AVX512F",
    "HW_CPU_X86_AVX512GFNI",
    "HW_CPU_X86_AVX512IFMA",
    "HW_CPU_X86_AVX512PF",
    "HW_CPU_X86_AVX512VAES",
    "HW_CPU_X86_AVX512VBMI",
    "HW_CPU_X86_AVX512VBMI2",
    "HW_CPU_X86_AVX512VL",
    "HW_CPU_X86_AVX512VNNI",
    "HW_CPU_X86_AVX512VPCLMULQDQ",
    "HW_CPU_X86_AVX512VPOPCNTDQ",
    "HW_CPU_X86_BMI",
    "HW_CPU_X86_BMI2",
    "HW_CPU_X86_CLMUL",
    "HW_CPU_X86_F16C",
    "HW_CPU_X86_FMA3",
    "HW_CPU_X86_FMA4",
    "HW_CPU_X86_INTEL_MD_CLEAR",
    "HW_CPU_X86_INTEL_PCID",
    "HW_CPU_X86_INTEL_SPEC_CTRL",
    "HW_CPU_X86_INTEL_SSBD",
    "HW_CPU_X86_INTEL_TDX",
    "HW_CPU_X86_INTEL_VMX",
    "HW_CPU_X86_MMX",
    "HW_CPU_X86_MPX",
    "HW_CPU_X86_PDPE1GB",
    "HW_CPU_X86_SGX",
    "HW_CPU_X86_SHA",
    "HW_CPU_X86_SSE",
    "HW_CPU_X86_SSE2",
    "HW_CPU_X86_SSE3",
    "HW_CPU_X86_SSE41",
    "HW_CPU_X86_SSE42",
    "HW_CPU_X86_SSE4A",
    "HW_CPU_X86_SSSE3",
    "HW_CPU_X86_STIBP",
    "HW_CPU_X86_SVM",
    "HW_CPU_X86_TBM",
    "HW_CPU_X86_TSX",
    "HW_CPU_X86_VMX",
    "HW_CPU_X86_XOP",
    "HW_GPU_API_DIRECT2D",
    "HW_GPU_API_DIRECT3D_V10_0",
    "HW_GPU_API_DIRECT3D_V10_1",
    "HW_GPU_API_DIRECT3D_V11_0",
    "HW_GPU_API_DIRECT3D_V11_1",
    "HW_GPU_API_DIRECT3D_V11_2",
    "HW_GPU_API_DIRECT3D_V11_3",
    "HW_GPU_API_DIRECT3D_V12_0",
    "HW_GPU_API_DIRECT3D_V6_0",
    "HW_GPU_API_DIRECT3D_V7_0",
    "HW_GPU_API_DIRECT3D_V8_0",
    "HW_GPU_API_DIRECT3D_V8_1",
    "HW_GPU_API_DIRECT3D_V9_0",
    "HW_GPU_API_DIRECT3D_V9_0B",
    "HW_GPU_API_DIRECT3D_V9_0C",
    "HW_GPU_API_DIRECT3D_V9_0L",
    "HW_GPU_API_DIRECTX_V10",
    "HW_GPU_API_DIRECTX_V11",
    "HW_GPU_API_DIRECTX_V12",
    "HW_GPU_API_DXVA",
    "HW_GPU_API_OPENCL_V1_0",
    "HW_GPU_API_OPENCL_V1_1",
    "HW_GPU_API_OPENCL_V1_2",
    "HW_GPU_API_OPENCL_V2_0",
    "HW_GPU_API_OPENCL_V2_1",
    "HW_GPU_API_OPENCL_V2_2",
    "HW_GPU_API_OPENGL_V1_1",
    "HW_GPU_API_OPENGL_V1_2",
    "HW_GPU_API_OPENGL_V1_3",
    "HW_GPU_API_OPENGL_V1_4",
    "HW_GPU_API_OPENGL_V1_5",
    "HW_GPU_API_OPENGL_V2_0",
    "HW_GPU_API_OPENGL_V2_1",
    "HW_GPU_API_OPENGL_V3_0",
    "HW_GPU_API_OPENGL_V3_1",
    "HW_GPU_API_OPENGL_V3_2",
    "HW_GPU_API_OPENGL_V3_3",
    "HW_GPU_API_OPENGL_V4_0",
    "HW_GPU_API_OPENGL_V4_1",
    "HW_GPU_API_OPENGL_V4_2",
    "HW_GPU_API_OPENGL_V4_3",
    "HW_GPU_API_OPENGL_V4_4",
    "HW_GPU_API_OPENGL_V4_5",
    "HW_GPU_API_VULKAN",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V1_0",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V1_1",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V1_2",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V1_3",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V2_0",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V2_1",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V3_0",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V3_2",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V3_5",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V3_7",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V5_0",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V5_2",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V5_3",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V6_0",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V6_1",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V6_2",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V7_0",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V7_1",
    "HW_GPU_CUDA_COMPUTE_CAPABILITY_V7_2",
    "HW_GPU_CUDA_SDK_V10_0",
    "HW_GPU_CUDA_SDK_V6_5",
    "HW_GPU_CUDA_SDK_V7_5",
    "HW_GPU_CUDA_SDK_V8_0",
    "HW_GPU_CUDA_SDK_V9_0",
    "HW_GPU_CUDA_SDK_V9_1",
    "HW_GPU_CUDA_SDK_V9_2",
    "HW_GPU_MAX_DISPLAY_HEADS_1",
    "HW_GPU_MAX_DISPLAY_HEADS_2",
    "HW_GPU_MAX_DISPLAY_HEADS_4",
    "HW_GPU_MAX_DISPLAY_HEADS_6",
    "HW_GPU_MAX_DISPLAY_HEADS_8",
    "HW_GPU_RESOLUTION_W1024H600",
    "HW_GPU_RESOLUTION_W1024H768",
    "HW_GPU_RESOLUTION_W1152H864",
    "HW_GPU_RESOLUTION_W1280H1024",
    "HW_GPU_RESOLUTION_W1280H720",
    "HW_GPU_RESOLUTION_W1280H768",
    "HW_GPU_RESOLUTION_W1280H800",
    "HW_GPU_RESOLUTION_W1360H768",
    "HW_GPU_RESOLUTION_W1366H768",
    "HW_GPU_RESOLUTION_W1440H900",
    "HW_GPU_RESOLUTION_W1600H1200",
    "HW_GPU_RESOLUTION_W1600H900",
    "HW_GPU_RESOLUTION_W1680H1050",
    "HW_GPU_RESOLUTION_W1920H1080",
    "HW_GPU_RESOLUTION_W1920H1200",
    "HW_GPU_RESOLUTION_W2560H1440",
    "HW_GPU_RESOLUTION_W2560H1600",
    "HW_GPU_RESOLUTION_W320H240",
    "HW_GPU_RESOLUTION_W3840H2160",
    "HW_GPU_RESOLUTION_W640H480",
    "HW_GPU_RESOLUTION_W7680H4320",
    "HW_GPU_RESOLUTION_W800H600",
    "HW_NIC_ACCEL_DEFLATE",
    "HW_NIC_ACCEL_DIFFIEH",
    "HW_NIC_ACCEL_ECC",
    "HW_NIC_ACCEL_IPSEC",
    "HW_NIC_ACCEL_LZS",
    "HW_NIC_ACCEL_RSA",
    "HW_NIC_ACCEL_SSL",
    "HW_NIC_ACCEL_TLS",
    "HW_NIC_DCB_ETS",
    "HW_NIC_DCB_PFC",
    "HW_NIC_DCB_QCN",
    "HW_NIC_MULTIQUEUE",
    "HW_NIC_OFFLOAD_FDF",
    "HW_NIC_OFFLOAD_GENEVE",
    "HW_NIC_OFFLOAD_GRE",
    "HW_NIC_OFFLOAD_GRO",
    "HW_NIC_OFFLOAD_GSO",
    "HW_NIC_OFFLOAD_L2CRC",
    "HW_NIC_OFFLOAD_LRO",
    "HW_NIC_OFFLOAD_LSO",
    "HW_NIC_OFFLOAD_QINQ",
    "HW_NIC_OFFLOAD_RDMA",
    "HW_NIC_OFFLOAD_RX",
    "HW_NIC_OFFLOAD_RXHASH",
    "HW_NIC_OFFLOAD_RXVLAN",
    "HW_NIC_OFFLOAD_SCS",
    "HW_NIC_OFFLOAD_SG",
    "HW_NIC_OFFLOAD_SWITCHDEV",
    "HW_NIC_OFFLOAD_TCS",
    "HW_NIC_OFFLOAD_TSO",
    "HW_NIC_OFFLOAD_TX",
    "HW_NIC_OFFLOAD_TXUDP",
    "HW_NIC_OFFLOAD_TXVLAN",
    "HW_NIC_OFFLOAD_UCS",
    "HW_NIC_OFFLOAD_UFO",
    "HW_NIC_OFFLOAD_VXLAN",
    "HW_NIC_PROGRAMMABLE_PIPELINE",
    "HW_NIC_SRIOV",
    "HW_NIC_SRIOV_MULTIQUEUE",
    "HW_NIC_SRIOV_QOS_RX",
    "HW_NIC_SRIOV_QOS_TX",
    "HW_NIC_SRIOV_TRUSTED",
    "HW_NIC_VMDQ",
    "HW_NUMA_ROOT",
    "HW_NVME_BES",
    "HW_NVME_CES",
    "HW_NVME_WZS",
    "HW_PCI_LIVE_MIGRATABLE",
    "HW_PCI_ONE_TIME_USE",
    "MISC_SHARES_VIA_AGGREGATE",
    "OWNER_CYBORG",
    "OWNER_NOVA",
    "STORAGE_DISK_HDD",
    "STORAGE_DISK_SSD",
];

/// os-resource-classes' standard resource classes.
pub const RESOURCE_CLASSES: &[&str] = &[
    "VCPU",
    "MEMORY_MB",
    "DISK_GB",
    "PCI_DEVICE",
    "SRIOV_NET_VF",
    "NUMA_SOCKET",
    "NUMA_CORE",
    "NUMA_THREAD",
    "NUMA_MEMORY_MB",
    "IPV4_ADDRESS",
    "VGPU",
    "VGPU_DISPLAY_HEAD",
    "NET_BW_EGR_KILOBIT_PER_SEC",
    "NET_BW_IGR_KILOBIT_PER_SEC",
    "PCPU",
    "MEM_ENCRYPTION_CONTEXT",
    "FPGA",
    "PGPU",
    "NET_PACKET_RATE_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_EGR_KILOPACKET_PER_SEC",
    "NET_PACKET_RATE_IGR_KILOPACKET_PER_SEC",
];

/// `^(?:re)$`: Python's `re.fullmatch`.
fn full(re: &str) -> Regex {
    Regex::new(&format!("^(?:{re})$")).expect("the table's patterns are valid")
}

/// The compiled name patterns of [`KNOWN`], by index (a plain name is a pattern to
/// Nova too: its `.` matches any character).
static NAME_RES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    KNOWN
        .iter()
        .map(|k| full(k.regex.unwrap_or(k.name)))
        .collect()
});

/// The compiled value patterns of [`KNOWN`].
static VALUE_RES: LazyLock<std::collections::HashMap<&'static str, Regex>> = LazyLock::new(|| {
    KNOWN
        .iter()
        .filter_map(|k| match k.value {
            Pattern(p) => Some((p, full(p))),
            _ => None,
        })
        .collect()
});

/// The compiled [`NAMESPACES`].
static NAMESPACE_RES: LazyLock<Vec<Regex>> =
    LazyLock::new(|| NAMESPACES.iter().map(|n| full(n)).collect());

/// `trait<group>:<name>` and `resources<group>:<name>`, split.
static TRAIT_KEY: LazyLock<Regex> = LazyLock::new(|| full(&format!("trait{GROUP}:(?P<name>.*)")));
static RESOURCE_KEY: LazyLock<Regex> =
    LazyLock::new(|| full(&format!("resources{GROUP}:(?P<name>.*)")));
/// The suffix of a custom trait or resource class.
static CUSTOM: LazyLock<Regex> = LazyLock::new(|| full("CUSTOM_[A-Z0-9_]+"));

const REQUIRED_OR_FORBIDDEN: ValueRule = Enum(&["required", "forbidden"]);
const AMOUNT: ValueRule = Int {
    min: None,
    max: None,
};

fn failed(detail: String) -> ApiError {
    ApiError::bad_request(format!("Validation failed; {detail}"))
}

/// The rule of the known spec `key` names, if any (plain names first, then patterns,
/// then the trait and resource families, as Nova searches).
fn rule_of(key: &str) -> Option<ValueRule> {
    if let Some(k) = KNOWN.iter().find(|k| k.name == key) {
        return Some(k.value);
    }
    if let Some((k, _)) = KNOWN
        .iter()
        .zip(NAME_RES.iter())
        .find(|(_, re)| re.is_match(key))
    {
        return Some(k.value);
    }
    let named = |re: &Regex, standard: &[&str]| {
        re.captures(key)
            .and_then(|c| c.name("name"))
            .is_some_and(|n| standard.contains(&n.as_str()) || CUSTOM.is_match(n.as_str()))
    };
    if named(&TRAIT_KEY, TRAITS) {
        return Some(REQUIRED_OR_FORBIDDEN);
    }
    if named(&RESOURCE_KEY, RESOURCE_CLASSES) {
        return Some(AMOUNT);
    }
    None
}

/// Python's `int(s)`: surrounding whitespace, a sign, digits with single underscores
/// between them.
fn python_int(s: &str) -> Option<i128> {
    let t = s.trim();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let ok = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !ok {
        return None;
    }
    let v: i128 = digits.replace('_', "").parse().ok()?;
    Some(if neg { -v } else { v })
}

fn check_value(rule: ValueRule, value: &str) -> Result<(), ApiError> {
    match rule {
        Any => Ok(()),
        Bool => crate::parse::parse_bool(value)
            .map(|_| ())
            .ok_or_else(|| failed(format!("'{value}' is not a valid boolean-like value."))),
        Pattern(p) => {
            if VALUE_RES.get(p).is_some_and(|re| re.is_match(value)) {
                Ok(())
            } else {
                Err(failed(format!("'{value}' is not of the format '{p}'.")))
            }
        }
        Enum(values) => {
            if values.contains(&value) {
                Ok(())
            } else {
                Err(failed(format!(
                    "'{value}' is not one of: {}.",
                    values.join(", ")
                )))
            }
        }
        Int { min, max } => {
            let v = python_int(value)
                .ok_or_else(|| failed(format!("'{value}' is not a valid integer value.")))?;
            if let Some(max) = max.filter(|&m| i128::from(m) < v) {
                return Err(failed(format!(
                    "'{v}' is greater than the max value of '{max}'."
                )));
            }
            if let Some(min) = min.filter(|&m| i128::from(m) > v) {
                return Err(failed(format!(
                    "'{v}' is less than the min value of '{min}'."
                )));
            }
            Ok(())
        }
    }
}

/// Checks one extra spec as Nova does from 2.86 (see the module invariants).
pub fn validate(key: &str, value: &str) -> Result<(), ApiError> {
    if let Some(rule) = rule_of(key) {
        return check_value(rule, value);
    }
    let Some((namespace, _)) = key.split_once(':') else {
        return Ok(());
    };
    if NAMESPACE_RES.iter().any(|re| re.is_match(namespace)) {
        return Err(failed(format!(
            "extra spec '{key}' does not appear to be a valid extra spec."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(key: &str, value: &str) -> String {
        validate(key, value).unwrap_err().message
    }

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(NAME_RES.len(), KNOWN.len());
        assert_eq!(NAMESPACE_RES.len(), NAMESPACES.len());
        let patterns = KNOWN
            .iter()
            .filter(|k| matches!(k.value, Pattern(_)))
            .count();
        assert!(VALUE_RES.len() <= patterns && !VALUE_RES.is_empty());
    }

    #[test]
    fn known_specs_check_their_values() {
        assert!(validate("hw:cpu_policy", "dedicated").is_ok());
        assert_eq!(
            msg("hw:cpu_policy", "sometimes"),
            "Validation failed; 'sometimes' is not one of: dedicated, shared, mixed."
        );
        assert!(validate("hw:numa_nodes", "2").is_ok());
        assert_eq!(
            msg("hw:numa_nodes", "two"),
            "Validation failed; 'two' is not a valid integer value."
        );
        assert_eq!(
            msg("hw:numa_nodes", "0"),
            "Validation failed; '0' is less than the min value of '1'."
        );
        assert!(validate("hw:numa_cpus.0", "0-3,^2").is_ok());
        assert!(validate("hw:numa_cpus.0", "x")
            .unwrap_err()
            .message
            .contains("is not of the format"));
        assert!(validate("hw:boot_menu", "yes").is_ok());
        assert_eq!(
            msg("hw:boot_menu", "maybe"),
            "Validation failed; 'maybe' is not a valid boolean-like value."
        );
        assert!(validate("trait:HW_CPU_X86_AVX", "required").is_ok());
        assert!(validate("trait1:CUSTOM_FOO", "forbidden").is_ok());
        assert!(validate("trait:HW_CPU_X86_AVX", "wanted").is_err());
        assert!(validate("resources:VCPU", "2").is_ok());
        assert!(validate("resources_g1:CUSTOM_GPU", "1").is_ok());
        assert!(validate("resources:VCPU", "two").is_err());
        assert!(validate("aggregate_instance_extra_specs:ssd", "<or> a <or> b").is_ok());
        assert_eq!(python_int(" +1_000 "), Some(1000));
        assert_eq!(python_int("1__0"), None);
    }

    #[test]
    fn unknown_keys_are_refused_only_in_known_namespaces() {
        assert_eq!(
            msg("hw:no_such_thing", "1"),
            "Validation failed; extra spec 'hw:no_such_thing' does not appear to be a valid extra spec."
        );
        assert!(validate("trait:NOT_A_TRAIT", "required").is_err());
        assert!(validate("resources2:NOT_A_CLASS", "1").is_err());
        assert!(validate("mycloud:anything", "x").is_ok());
        assert!(validate("plain_key", "x").is_ok());
        assert!(validate("group_policy", "isolate").is_ok());
        assert!(validate("group_policy", "loose").is_err());
    }
}
