#!/usr/bin/env python3
"""Builds the disk images of tempest's ImagesFormatTest and their manifest.

Usage: ops/tempest/gen-test-images.py OUTPUT_DIR

Writes OUTPUT_DIR/manifest.yml in the os-test-images manifest shape (a list `images`
of {name, format, usable, insecure, filename, description}) and one file per image,
named `<name>.<format>`. tempest reads the manifest from `[image]
images_manifest_file` and runs every ImagesFormatTest method once per image.

The set follows os-test-images (good images of each format, and the known ways to
smuggle a host file or a second header into an image), built here with qemu-img
where it can write the format, and as plain bytes from the formats' layouts where it
cannot (ISO 9660, GPT) or where the image is deliberately malformed. qemu-img must be
installed (ops/tempest/run.sh installs qemu-utils).
"""

import os
import shutil
import struct
import subprocess
import sys

SECTOR = 512


def qemu_img(*args, cwd):
    subprocess.run(["qemu-img", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def qemu_supports(fmt):
    """Whether this qemu-img can write `fmt` (QED support is optional in builds)."""
    out = subprocess.run(["qemu-img", "--help"], capture_output=True, text=True).stdout
    listed = out.split("Supported image formats:", 1)[-1].split("\n\n")
    return any(fmt in block.split() for block in listed[:2])


def patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def iso9660(path, label):
    """A minimal ISO 9660 volume: 16 empty system-area sectors, a primary volume
    descriptor (type 1, `CD001`) giving the volume size, a set terminator."""
    block = 2048
    blocks = 24
    pvd = bytearray(block)
    pvd[0] = 1
    pvd[1:6] = b"CD001"
    pvd[6] = 1
    pvd[40:72] = label.upper().encode().ljust(32)[:32]
    pvd[80:88] = struct.pack("<I", blocks) + struct.pack(">I", blocks)
    pvd[120:124] = struct.pack("<H", 1) + struct.pack(">H", 1)
    pvd[124:128] = struct.pack("<H", 1) + struct.pack(">H", 1)
    pvd[128:132] = struct.pack("<H", block) + struct.pack(">H", block)
    pvd[881] = 1
    term = bytearray(block)
    term[0] = 255
    term[1:6] = b"CD001"
    term[6] = 1
    with open(path, "wb") as f:
        f.write(bytes(16 * block) + pvd + term + bytes((blocks - 18) * block))


def gpt_disk(path, size=1024 * 1024):
    """A blank GPT disk: a protective MBR (one 0xEE partition from LBA 1, CHS 0/2/0)
    and a GPT header at LBA 1 with an empty partition array."""
    sectors = size // SECTOR
    mbr = bytearray(SECTOR)
    entry = struct.pack("<B3sB3sII", 0, bytes([0, 2, 0]), 0xEE, bytes([0xFF, 0xFF, 0xFF]),
                        1, min(sectors - 1, 0xFFFFFFFF))
    mbr[446:462] = entry
    mbr[510:512] = b"\x55\xaa"
    hdr = bytearray(92)
    struct.pack_into("<8sIIIIQQQQ16sQIII", hdr, 0, b"EFI PART", 0x00010000, 92, 0, 0,
                     1, sectors - 1, 34, sectors - 34, os.urandom(16), 2, 128, 128, 0)
    import zlib
    struct.pack_into("<I", hdr, 16, zlib.crc32(bytes(hdr)))
    with open(path, "wb") as f:
        f.write(bytes(mbr) + bytes(hdr).ljust(SECTOR, b"\0"))
        f.write(bytes(size - 2 * SECTOR))


def vmdk_descriptor_replace(path, old, new):
    """Replaces `old` by `new` in the embedded descriptor of a sparse VMDK (sector 1
    onwards), keeping the descriptor's length."""
    with open(path, "r+b") as f:
        header = f.read(SECTOR)
        desc_sector, desc_sectors = struct.unpack_from("<QQ", header, 28)
        f.seek(desc_sector * SECTOR)
        desc = f.read(desc_sectors * SECTOR)
        text = desc.rstrip(b"\0").replace(old.encode(), new.encode())
        f.seek(desc_sector * SECTOR)
        f.write(text.ljust(len(desc), b"\0")[:len(desc)])


def vmdk_add_footer(path):
    """Turns a monolithicSparse VMDK into one whose header defers to a footer: the
    header's grain directory offset becomes "at end", and the file ends with a footer
    marker, a copy of the original header (the footer) and an end-of-stream marker."""
    with open(path, "r+b") as f:
        header = f.read(SECTOR)
        f.seek(56)
        f.write(struct.pack("<Q", 0xFFFFFFFFFFFFFFFF))
        f.seek(0, 2)
        f.write(struct.pack("<QII", 0, 0, 3).ljust(SECTOR, b"\0"))
        f.write(header)
        f.write(bytes(SECTOR))


def build(out):
    hosts = "/etc/hosts"
    images = []

    def add(name, fmt, usable, insecure, description, make):
        filename = f"{name}.{fmt}"
        make(os.path.join(out, filename), filename)
        images.append(dict(name=name, format=fmt, usable=usable, insecure=insecure,
                           filename=filename, description=description))

    def q(*args):
        return lambda path, fn: qemu_img(*args, fn, "10M", cwd=out)

    add("standard-qcow2v3", "qcow2", True, False,
        "A blank qcow2 (v3) image with no external references.",
        q("create", "-f", "qcow2"))
    add("qcow-with-backing", "qcow2", False, True,
        "A qcow2 image whose backing file is a host file.",
        q("create", "-f", "qcow2", "-u", "-F", "raw", "-b", hosts))

    def datafile(path, fn):
        qemu_img("create", "-f", "qcow2", "-o",
                 "data_file=qcow-data-file,data_file_raw=on", fn, "10M", cwd=out)
        os.remove(os.path.join(out, "qcow-data-file"))
    add("qcow-with-datafile", "qcow2", False, True,
        "A qcow2 image with an external data file (incompatible feature bit 2).",
        datafile)

    def unknown_feature(path, fn):
        qemu_img("create", "-f", "qcow2", fn, "10M", cwd=out)
        patch(path, 0x48, struct.pack(">Q", 1 << 40))
    add("qcow2-unknown-feature", "qcow2", False, True,
        "A qcow2 image announcing an incompatible feature no checker knows.",
        unknown_feature)

    add("raw-blank", "raw", True, False,
        "A file of zeros, which matches no format.",
        lambda path, fn: qemu_img("create", "-f", "raw", fn, "1M", cwd=out))
    add("gpt-blank", "gpt", True, False,
        "A whole disk with a protective MBR and an empty GPT.",
        lambda path, fn: gpt_disk(path))
    if qemu_supports("qed"):
        add("standard", "qed", False, False,
            "A blank QED image: a format no service should accept.",
            q("create", "-f", "qed"))
    add("standard-iso9660", "iso", True, False,
        "An ISO 9660 volume.",
        lambda path, fn: iso9660(path, "standard-iso9660"))

    def iso_with_qcow2(path, fn):
        iso9660(path, "iso-with-qcow2")
        tmp = os.path.join(out, "tmp.qcow")
        qemu_img("create", "-f", "qcow2", "tmp.qcow", "10M", cwd=out)
        with open(tmp, "rb") as f:
            patch(path, 0, f.read(32 * 1024))
        os.remove(tmp)
    add("iso-with-qcow2-in-system", "iso", False, True,
        "An ISO 9660 volume with a qcow2 header in its system area, which fools tools "
        "that look at the first bytes only.", iso_with_qcow2)

    add("vmdk-monolithicSparse", "vmdk", True, False,
        "A sparse VMDK with its embedded descriptor.",
        q("create", "-f", "vmdk", "-o", "subformat=monolithicSparse"))
    add("vmdk-streamOptimized", "vmdk", True, False,
        "A stream-optimized VMDK.",
        q("create", "-f", "vmdk", "-o", "subformat=streamOptimized"))

    def flat(leak):
        def make(path, fn):
            qemu_img("create", "-f", "vmdk", "-o", "subformat=monolithicFlat", fn, "10M",
                     cwd=out)
            stem = fn[:-len(".vmdk")]
            extent = f"{stem}-flat.vmdk"
            if leak:
                with open(path) as f:
                    text = f.read()
                with open(path, "w") as f:
                    f.write(text.replace(extent, hosts))
            os.remove(os.path.join(out, extent))
        return make
    add("vmdk-monolithicFlat", "vmdk", False, False,
        "A text VMDK descriptor whose data is in another file.", flat(False))
    add("vmdk-monolithicFlat-leak", "vmdk", False, True,
        "A text VMDK descriptor whose extent is a host file.", flat(True))

    def url_backing(path, fn):
        qemu_img("create", "-f", "vmdk", "-o", "subformat=monolithicSparse", fn, "10M",
                 cwd=out)
        vmdk_descriptor_replace(path, fn, hosts)
    add("vmdk-sparse-with-url-backing", "vmdk", False, True,
        "A sparse VMDK whose descriptor names a host file as its extent.", url_backing)

    def footer(path, fn):
        qemu_img("create", "-f", "vmdk", "-o", "subformat=monolithicSparse", fn, "10M",
                 cwd=out)
        vmdk_add_footer(path)
    add("vmdk-sparse-with-footer", "vmdk", True, False,
        "A sparse VMDK whose header defers to a (valid) footer.", footer)

    add("standard-vhd", "vhd", True, False, "A dynamic VHD (qemu's vpc).",
        q("create", "-f", "vpc"))
    add("standard-vhdx", "vhdx", True, False, "A dynamic VHDX.",
        q("create", "-f", "vhdx"))
    add("standard-vdi", "vdi", True, False, "A dynamic VirtualBox VDI.",
        q("create", "-f", "vdi"))
    return images


def yaml_str(s):
    return "'" + s.replace("'", "''") + "'"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = os.path.abspath(sys.argv[1])
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    images = build(out)
    with open(os.path.join(out, "manifest.yml"), "w") as f:
        f.write("images:\n")
        for i in images:
            f.write(f"- name: {yaml_str(i['name'])}\n")
            for k in ("format", "filename", "description"):
                f.write(f"  {k}: {yaml_str(i[k])}\n")
            for k in ("usable", "insecure"):
                f.write(f"  {k}: {'true' if i[k] else 'false'}\n")
    print(f"{len(images)} images and manifest.yml in {out}")


if __name__ == "__main__":
    main()
