"""A VM's QEMU command line, built once when the VM is made and kept in its vm.json."""

from __future__ import annotations

from core.backends.qemu.accel import BootFiles
from core.backends.qemu.layout import VMFiles
from core.backends.qemu.network import netdev


def build_argv(
    files: VMFiles,
    memory_mb: int,
    cpus: int,
    accel: str,
    port: int,
    boot: BootFiles | None,
) -> list[str]:
    """QEMU's arguments (without the binary) for a VM with these files and resources;
    `port` is the loopback port forwarded to the guest, `boot` a kernel to boot directly."""
    sock = files.sock_dir
    options: list[tuple[str, str]] = [
        ("-name", f"hvkube-{files.name},process=hvkube-{files.name}"),
        ("-machine", "q35"),
        ("-accel", accel),
        ("-m", str(memory_mb)),
        ("-smp", str(cpus)),
        ("-vga", "std"),
        ("-display", "none"),
        ("-blockdev", f"driver=file,filename={files.disk},node-name=disk0-file"),
        ("-blockdev", "driver=qcow2,file=disk0-file,node-name=disk0"),
        ("-device", "virtio-blk-pci,drive=disk0,bootindex=1"),
        # User-mode networking, one loopback port forwarded to the guest (see network.py).
        ("-netdev", netdev(port)),
        ("-device", "virtio-net-pci,netdev=net0,romfile="),
        # Serial console on a socket, everything it prints kept in serial.log.
        (
            "-chardev",
            f"socket,id=ser0,path={sock / 'console.sock'},server=on,wait=off,"
            f"logfile={files.serial},logappend=on",
        ),
        ("-serial", "chardev:ser0"),
        ("-chardev", f"socket,id=qmp0,path={sock / 'qmp.sock'},server=on,wait=off"),
        ("-mon", "chardev=qmp0,mode=control"),
        # The guest agent's channel.
        ("-device", "virtio-serial-pci,id=vser0"),
        ("-chardev", f"socket,id=qga0,path={sock / 'qga.sock'},server=on,wait=off"),
        ("-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0"),
        # An absolute pointer, so clicks land where they are aimed.
        ("-device", "qemu-xhci,id=xhci0"),
        ("-device", "usb-tablet,bus=xhci0.0"),
        # The screen, for a console viewer; served on a unix socket only.
        ("-vnc", f"unix:{sock / 'vnc.sock'}"),
        ("-pidfile", str(files.pidfile)),
    ]
    argv = ["-nodefaults", "-no-user-config"]
    for option, value in options:
        argv += [option, value]
    if boot is not None:
        argv += ["-kernel", boot.kernel, "-append", boot.append]
        if boot.initrd:
            argv += ["-initrd", boot.initrd]
    return argv
