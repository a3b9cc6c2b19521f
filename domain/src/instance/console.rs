//! The serial console of a server on the simulated hypervisor (Nova's
//! `os-getConsoleOutput`): the boot log its guest prints.
//!
//! The log is a pure function of the instance, so the API, any compute agent and a
//! replay all read the same text without asking a hypervisor (Stratus has no RPC from
//! the API to the agents): one boot when it was launched (`launched_at`, renewed by a
//! rebuild), and a power-down line while it is shut down.

use super::Instance;
use crate::states::PowerState;

/// Every line of the console log of `i` (none before its first boot).
pub fn boot_log(i: &Instance) -> Vec<String> {
    let Some(launched) = i.launched_at else {
        return Vec::new();
    };
    let f = &i.flavor.spec;
    let host = hostname(&i.spec.name);
    let mut lines = vec![
        "[    0.000000] Linux version 6.8.0-stratus (builder@stratus) #1 SMP PREEMPT_DYNAMIC".to_string(),
        "[    0.000000] Command line: BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro console=ttyS0".to_string(),
        format!("[    0.000000] Memory: {}K available", f.ram_mb * 1024),
        format!("[    0.012000] smp: Brought up 1 node, {} CPUs", f.vcpus),
        "[    1.204000] EXT4-fs (vda1): mounted filesystem with ordered data mode".to_string(),
        format!(
            "[    2.480000] cloud-init[512]: Cloud-init v. 24.1 running 'init' at {} (epoch micros)",
            launched.0
        ),
        format!(
            "[    2.512000] cloud-init[512]: instance-id: {}, local-hostname: {host}",
            i.id()
        ),
        format!("{host} login: "),
    ];
    if i.power_state == PowerState::Shutdown {
        lines.push("[   60.000000] reboot: Power down".to_string());
    }
    lines
}

/// The last `length` lines of the log joined by newlines (all of it for `None`).
pub fn output(i: &Instance, length: Option<usize>) -> String {
    let lines = boot_log(i);
    let from = length.map_or(0, |n| lines.len().saturating_sub(n));
    lines[from..].join("\n")
}

/// A guest hostname from the display name (letters, digits and dashes).
fn hostname(name: &str) -> String {
    let h: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let h = h.trim_matches('-');
    if h.is_empty() {
        "server".into()
    } else {
        h.chars().take(63).collect()
    }
}
