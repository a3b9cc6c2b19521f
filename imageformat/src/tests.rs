//! Inspections of byte images built here from the formats' layouts, and (when
//! `qemu-img` is installed) of images qemu-img writes.

use super::*;

const MIB: u64 = 1024 * 1024;

fn qcow2_header(version: u32, backing: u64, features: u64, size: u64) -> Vec<u8> {
    let mut b = vec![0u8; 64 * 1024];
    b[..4].copy_from_slice(b"QFI\xfb");
    b[4..8].copy_from_slice(&version.to_be_bytes());
    b[8..16].copy_from_slice(&backing.to_be_bytes());
    b[20..24].copy_from_slice(&16u32.to_be_bytes());
    b[24..32].copy_from_slice(&size.to_be_bytes());
    b[0x48..0x50].copy_from_slice(&features.to_be_bytes());
    b
}

fn vmdk_sparse(descriptor: &str, footer: bool) -> Vec<u8> {
    let mut b = vec![0u8; 64 * 1024];
    b[..4].copy_from_slice(b"KDMV");
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    b[12..20].copy_from_slice(&(20480u64).to_le_bytes()); // 10 MiB in sectors
    b[20..28].copy_from_slice(&128u64.to_le_bytes());
    b[28..36].copy_from_slice(&1u64.to_le_bytes());
    b[36..44].copy_from_slice(&20u64.to_le_bytes());
    b[56..64].copy_from_slice(&21u64.to_le_bytes());
    b[512..512 + descriptor.len()].copy_from_slice(descriptor.as_bytes());
    if footer {
        let header: Vec<u8> = b[..512].to_vec();
        b[56..64].copy_from_slice(&GD_AT_END.to_le_bytes());
        let mut tail = vec![0u8; 1536];
        tail[12..16].copy_from_slice(&3u32.to_le_bytes());
        tail[512..1024].copy_from_slice(&header);
        b.extend(tail);
    }
    b
}

fn descriptor(kind: &str, extent: &str) -> String {
    format!(
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"{kind}\"\n\n# Extent description\nRW 20480 SPARSE \"{extent}\"\n\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"20\"\n"
    )
}

fn iso_image(qcow_in_system_area: bool) -> Vec<u8> {
    let mut b = vec![0u8; 64 * 1024];
    let d = 32 * 1024;
    b[d] = 1;
    b[d + 1..d + 6].copy_from_slice(b"CD001");
    b[d + 80..d + 84].copy_from_slice(&32u32.to_le_bytes());
    b[d + 128..d + 130].copy_from_slice(&2048u16.to_le_bytes());
    if qcow_in_system_area {
        b[..512].copy_from_slice(&qcow2_header(3, 0, 0, 10 * MIB)[..512]);
    }
    b
}

fn gpt_disk(entries: &[(u8, [u8; 3], u32)]) -> Vec<u8> {
    let mut b = vec![0u8; MIB as usize];
    for (i, (kind, chs, lba)) in entries.iter().enumerate() {
        let e = 446 + 16 * i;
        b[e + 1..e + 4].copy_from_slice(chs);
        b[e + 4] = *kind;
        b[e + 8..e + 12].copy_from_slice(&lba.to_le_bytes());
    }
    b[510] = 0x55;
    b[511] = 0xAA;
    b[512..520].copy_from_slice(b"EFI PART");
    b
}

fn ok(b: &[u8]) -> Inspected {
    inspect(b).expect("a verdict")
}

#[test]
fn qcow2_size_and_safety() {
    let i = ok(&qcow2_header(3, 0, 0, 10 * MIB));
    assert_eq!((i.format, i.virtual_size), (Format::Qcow2, 10 * MIB));
    assert!(i.is_safe());
    assert!(ok(&qcow2_header(2, 0, 0, MIB)).is_safe());
    let checks =
        |b: Vec<u8>| -> Vec<&'static str> { ok(&b).violations.iter().map(|v| v.check).collect() };
    assert_eq!(checks(qcow2_header(3, 0x200, 0, MIB)), ["backing_file"]);
    assert_eq!(checks(qcow2_header(3, 0, 1 << 2, MIB)), ["data_file"]);
    assert_eq!(
        checks(qcow2_header(3, 0, 1 << 4, MIB)),
        ["unknown_features"]
    );
    assert_eq!(checks(qcow2_header(1, 0, 0, MIB)), ["unknown_features"]);
    // Dirty and corrupt bits and the compression type are known features.
    assert!(ok(&qcow2_header(3, 0, 0b1011, MIB)).is_safe());
}

#[test]
fn raw_is_what_nothing_else_is() {
    for b in [
        vec![],
        vec![0u8; MIB as usize],
        b"127.0.0.1 localhost\n".repeat(100),
    ] {
        let i = ok(&b);
        assert_eq!(i.format, Format::Raw);
        assert_eq!(i.virtual_size, b.len() as u64);
        assert!(i.is_safe());
    }
    // A short qcow2 magic is not a qcow2 header.
    assert_eq!(ok(b"QFI\xfb\0\0\0\x03").format, Format::Raw);
}

#[test]
fn vmdk_sparse_streamoptimized_and_footer() {
    let i = ok(&vmdk_sparse(
        &descriptor("monolithicSparse", "disk.vmdk"),
        false,
    ));
    assert_eq!((i.format, i.virtual_size), (Format::Vmdk, 10 * MIB));
    assert!(i.is_safe(), "{i:?}");
    assert!(ok(&vmdk_sparse(
        &descriptor("streamOptimized", "disk.vmdk"),
        false
    ))
    .is_safe());
    let f = ok(&vmdk_sparse(
        &descriptor("monolithicSparse", "disk.vmdk"),
        true,
    ));
    assert!(f.is_safe(), "{f:?}");
    // A footer that announces another footer.
    let mut b = vmdk_sparse(&descriptor("monolithicSparse", "disk.vmdk"), true);
    let n = b.len();
    b[n - 1024 + 56..n - 1024 + 64].copy_from_slice(&GD_AT_END.to_le_bytes());
    assert_eq!(
        ok(&b).violations[0].reason,
        "Footer indicates another footer"
    );
    // No footer at all where the header says there is one.
    let mut b = vmdk_sparse(&descriptor("monolithicSparse", "disk.vmdk"), true);
    b.truncate(b.len() - 1536);
    b.extend(vec![0u8; 1536]);
    assert_eq!(ok(&b).violations[0].check, "footer");
}

#[test]
fn vmdk_unsafe_descriptors() {
    let reason = |b: Vec<u8>| ok(&b).violations.first().map(|v| v.reason.clone());
    assert_eq!(
        reason(vmdk_sparse(
            &descriptor("monolithicSparse", "/etc/hosts"),
            false
        ))
        .as_deref(),
        Some("Invalid extent filenames found")
    );
    assert_eq!(
        reason(vmdk_sparse(&descriptor("vmfs", "disk.vmdk"), false)).as_deref(),
        Some("Unsupported subformat")
    );
    assert_eq!(
        reason(vmdk_sparse(
            "createType=\"monolithicSparse\"\nrm -rf /\n",
            false
        ))
        .as_deref(),
        Some("Invalid VMDK descriptor data")
    );
    assert_eq!(
        reason(vmdk_sparse("createType=\"monolithicSparse\"\n", false)).as_deref(),
        Some("No extents found")
    );
    // A text descriptor (monolithicFlat): a VMDK whose data is in another file.
    let flat = descriptor("monolithicFlat", "disk-flat.vmdk").replace("SPARSE", "FLAT");
    let i = ok(flat.as_bytes());
    assert_eq!(i.format, Format::Vmdk);
    assert_eq!(i.violations[0].reason, "Unsupported subformat");
    // Text without a createType is just text.
    assert_eq!(ok(&b"hello world\n".repeat(20)).format, Format::Raw);
}

#[test]
fn vhd_vhdx_vdi_qed() {
    let mut vhd = vec![0u8; 1024];
    vhd[..8].copy_from_slice(b"conectix");
    vhd[40..48].copy_from_slice(&(5 * MIB).to_be_bytes());
    assert_eq!(ok(&vhd).virtual_size, 5 * MIB);

    let mut vdi = vec![0u8; 1024];
    vdi[0x40..0x44].copy_from_slice(&0xBEDA_107Fu32.to_le_bytes());
    vdi[0x170..0x178].copy_from_slice(&(3 * MIB).to_le_bytes());
    let i = ok(&vdi);
    assert_eq!((i.format, i.virtual_size), (Format::Vdi, 3 * MIB));

    let mut qed = vec![0u8; 1024];
    qed[..4].copy_from_slice(b"QED\0");
    let i = ok(&qed);
    assert_eq!((i.format, i.violations[0].check), (Format::Qed, "banned"));

    let mut x = vec![0u8; 1024 * 1024];
    x[..8].copy_from_slice(b"vhdxfile");
    let rt = 192 * 1024;
    x[rt..rt + 4].copy_from_slice(b"regi");
    x[rt + 8..rt + 12].copy_from_slice(&1u32.to_le_bytes());
    x[rt + 16..rt + 32].copy_from_slice(&VHDX_METADATA_REGION);
    x[rt + 32..rt + 40].copy_from_slice(&(512u64 * 1024).to_le_bytes());
    let m = 512 * 1024;
    x[m..m + 8].copy_from_slice(b"metadata");
    x[m + 10..m + 12].copy_from_slice(&1u16.to_le_bytes());
    x[m + 32..m + 48].copy_from_slice(&VHDX_VIRTUAL_DISK_SIZE);
    x[m + 48..m + 52].copy_from_slice(&65536u32.to_le_bytes());
    x[m + 65536..m + 65544].copy_from_slice(&(7 * MIB).to_le_bytes());
    let i = ok(&x);
    assert_eq!((i.format, i.virtual_size), (Format::Vhdx, 7 * MIB));
    // A broken region table: not a VHDX.
    x[rt..rt + 4].copy_from_slice(b"xxxx");
    assert_eq!(ok(&x).format, Format::Raw);
}

#[test]
fn iso_and_hidden_headers() {
    let i = ok(&iso_image(false));
    assert_eq!((i.format, i.virtual_size), (Format::Iso, 64 * 1024));
    match inspect(iso_image(true).as_slice()) {
        Err(e @ InspectError::Multiple(_)) => {
            assert_eq!(e.to_string(), "Multiple formats detected: qcow2,iso")
        }
        other => panic!("{other:?}"),
    }
    // A bootable ISO with a GPT in its system area is an ISO.
    let mut b = iso_image(false);
    b[..512].copy_from_slice(&gpt_disk(&[(0xEE, [0, 2, 0], 1)])[..512]);
    assert_eq!(ok(&b).format, Format::Iso);
}

#[test]
fn gpt_and_its_mbr() {
    let i = ok(&gpt_disk(&[(0xEE, [0, 2, 0], 1)]));
    assert_eq!(i.format, Format::Gpt);
    assert!(i.is_safe());
    let reason = |e: &[(u8, [u8; 3], u32)]| ok(&gpt_disk(e)).violations[0].reason.clone();
    assert_eq!(reason(&[]), "GPT MBR has no partitions defined");
    assert_eq!(
        reason(&[(0xEE, [0, 2, 0], 2)]),
        "GPT MBR has invalid start LBA"
    );
    assert_eq!(
        reason(&[(0xEE, [1, 2, 0], 1)]),
        "GPT MBR has invalid start CHS"
    );
    assert_eq!(
        reason(&[(0xEE, [0, 2, 0], 1), (0x83, [0, 0, 0], 4096)]),
        "GPT MBR defines invalid extra partitions"
    );
    // A classic MBR disk is a "gpt" whole disk too (format_inspector's naming).
    assert!(ok(&gpt_disk(&[(0x83, [0, 0, 0], 2048)])).is_safe());
}

#[test]
fn glance_decisions() {
    let q = inspect(qcow2_header(3, 0, 0, 10 * MIB).as_slice());
    assert_eq!(
        glance_upload("qcow2", &q, true),
        UploadVerdict::Accept {
            virtual_size: Some(10 * MIB)
        }
    );
    assert_eq!(
        glance_upload("vmdk", &q, true),
        UploadVerdict::Reject("Image disk_format vmdk does not match stream data qcow2".into())
    );
    assert_eq!(
        glance_upload("vmdk", &q, false),
        UploadVerdict::Accept { virtual_size: None }
    );
    // Anything may claim raw (virtual size: the bytes).
    assert_eq!(
        glance_upload("raw", &q, true),
        UploadVerdict::Accept {
            virtual_size: Some(64 * 1024)
        }
    );
    let zeros = inspect([0u8; 4096].as_slice());
    assert_eq!(
        glance_upload("ami", &zeros, true),
        UploadVerdict::Accept { virtual_size: None }
    );
    assert_eq!(
        glance_upload("qcow2", &zeros, true),
        UploadVerdict::Reject("Image disk_format qcow2 does not match stream data raw".into())
    );
    let backing = inspect(qcow2_header(3, 0x200, 0, MIB).as_slice());
    assert_eq!(
        glance_upload("qcow2", &backing, true),
        UploadVerdict::Reject("Image failed safety checks".into())
    );
    let both = inspect(iso_image(true).as_slice());
    assert_eq!(
        glance_upload("iso", &both, true),
        UploadVerdict::Reject("Multiple formats detected: qcow2,iso".into())
    );
}

#[test]
fn nova_decisions() {
    let q = inspect(qcow2_header(3, 0, 0, MIB).as_slice());
    assert_eq!(nova_boot("qcow2", &q), Ok(()));
    assert_eq!(
        nova_boot("raw", &q),
        Err("Image content does not match disk_format")
    );
    assert_eq!(
        nova_boot("ploop", &q),
        Err("Image not in a supported format")
    );
    assert_eq!(nova_boot("ami", &q), Ok(()));
    let backing = inspect(qcow2_header(3, 0x200, 0, MIB).as_slice());
    assert_eq!(
        nova_boot("qcow2", &backing),
        Err("Image does not pass safety check")
    );
    let disk = inspect(gpt_disk(&[(0xEE, [0, 2, 0], 1)]).as_slice());
    assert_eq!(nova_boot("raw", &disk), Ok(()));
    assert_eq!(
        nova_boot("qcow2", &disk),
        Err("Image content does not match disk_format")
    );
    let both = inspect(iso_image(true).as_slice());
    assert_eq!(
        nova_boot("iso", &both),
        Err("Image content does not match disk_format")
    );
}

/// What qemu-img writes is detected as the format it was asked for (skipped without
/// qemu-img).
#[test]
fn qemu_img_images() {
    if std::process::Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("qemu-img not installed: skipped");
        return;
    }
    let dir = std::env::temp_dir().join(format!("imageformat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    for (fmt, opts, want, safe) in [
        ("qcow2", "", Format::Qcow2, true),
        ("raw", "", Format::Raw, true),
        ("vpc", "", Format::Vhd, true),
        ("vhdx", "", Format::Vhdx, true),
        ("vdi", "", Format::Vdi, true),
        ("vmdk", "subformat=monolithicSparse", Format::Vmdk, true),
        ("vmdk", "subformat=streamOptimized", Format::Vmdk, true),
        ("vmdk", "subformat=monolithicFlat", Format::Vmdk, false),
    ] {
        let path = dir.join(format!("img-{fmt}-{}", opts.len()));
        let mut cmd = std::process::Command::new("qemu-img");
        cmd.args(["create", "-q", "-f", fmt]);
        if !opts.is_empty() {
            cmd.args(["-o", opts]);
        }
        let out = cmd.arg(&path).arg("10M").output().expect("qemu-img runs");
        assert!(out.status.success(), "{fmt}: {out:?}");
        let i = inspect_file(&path).expect("inspects");
        assert_eq!((i.format, i.is_safe()), (want, safe), "{fmt} {opts}: {i:?}");
        if safe && want != Format::Raw {
            // VHD rounds the size to its CHS geometry.
            assert!(i.virtual_size >= 10 * MIB - 64 * 1024, "{fmt}: {i:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
