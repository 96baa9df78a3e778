"""The files of a QEMU VM, and writing them so readers never see half a file.

One directory per VM under the backend's root (default: `qemu-vms` beside the database):

    NAME/marker.txt      the VM's id and the ownership mark of the store that made it
    NAME/vm.json         the VM's definition and its exact QEMU command line
    NAME/disk.qcow2      the clone: a qcow2 overlay whose backing file is the template;
                         `remove` leaves it (as Remove-VM does), `remove_disk` deletes it
    NAME/qemu.pid        pidfile of the running QEMU process
    NAME/qmp.sock        QMP monitor socket
    NAME/console.sock    serial console (a unix socket); its output is logged to serial.log
    NAME/qga.sock        guest agent channel (used when a guest agent answers)
    NAME/qemu.log        QEMU's own messages
    NAME/runtime.json    what the backend knows about the guest (booted since cold boot)
    NAME/state.bin       the saved state: present, with no QEMU process, means Saved
    NAME/checkpoints/C.* a checkpoint: the overlay (C.qcow2), the memory (C.state), C.json

Templates are qcow2 files. A template `NAME.qcow2` boots from its disk, or directly
from a kernel when `NAME.kernel` lies beside it (with `NAME.initrd` and `NAME.cmdline`
when present).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.backends.qemu.accel import BootFiles
from core.backends.qemu.marker import MARKER_FILE
from core.files import write_text_atomic


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def write_text(path: Path, text: str) -> None:
    """Write through an exclusively created temporary name (never a planted link), so
    readers see the old or the new content."""
    write_text_atomic(path, text, mode=0o600)


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True))


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def copy_file(src: Path, dst: Path) -> None:
    """Copy through a temporary name, so `dst` is either the old or the new file."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def boot_files_for(template_disk: str | Path) -> BootFiles | None:
    """Direct-boot files beside a template: NAME.kernel (+ NAME.initrd, NAME.cmdline)."""
    disk = Path(template_disk)
    kernel = disk.with_suffix(".kernel")
    if not kernel.is_file():
        return None
    initrd = disk.with_suffix(".initrd")
    cmdline = disk.with_suffix(".cmdline")
    append = cmdline.read_text().strip() if cmdline.is_file() else "console=ttyS0"
    return BootFiles(str(kernel), str(initrd) if initrd.is_file() else None, append)


def default_test_guest() -> Path:
    """Where scripts/build-test-guest.sh puts the test guest's template."""
    cache = os.environ.get("HVKUBE_GUEST_CACHE") or str(
        Path.home() / ".cache" / "hvkube" / "test-guest"
    )
    return Path(cache) / "guest.qcow2"


class VMFiles:
    """The paths of one VM's directory (sockets in a short directory if the path is long)."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.dir = root / name
        self.marker = self.dir / MARKER_FILE
        self.config = self.dir / "vm.json"
        self.disk = self.dir / "disk.qcow2"
        self.pidfile = self.dir / "qemu.pid"
        self.log = self.dir / "qemu.log"
        self.serial = self.dir / "serial.log"
        self.runtime = self.dir / "runtime.json"
        self.state = self.dir / "state.bin"
        self.op = self.dir / "op.json"
        self.checkpoints = self.dir / "checkpoints"
        self.screen = self.dir / "screen.png"
        sock_dir = self.dir
        if len(str(self.dir)) > 90:  # unix socket paths are limited to 108 bytes
            digest = hashlib.sha256(str(self.dir).encode()).hexdigest()[:16]
            sock_dir = Path(f"/tmp/hvkube-{os.getuid()}") / digest
        self.sock_dir = sock_dir
        self.qmp = sock_dir / "qmp.sock"
        self.console = sock_dir / "console.sock"
        self.qga = sock_dir / "qga.sock"
        self.vnc = sock_dir / "vnc.sock"


def read_runtime(files: VMFiles) -> dict[str, Any]:
    """What runtime.json says about the guest ({} when there is nothing to read)."""
    return read_json(files.runtime) or {}


def set_runtime(files: VMFiles, **values: Any) -> None:
    """Update runtime.json with `values`."""
    runtime = read_runtime(files)
    runtime.update(values)
    write_json(files.runtime, runtime)
