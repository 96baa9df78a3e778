"""Disks: qcow2 overlays on a template, made and inspected with qemu-img.

A VM's disk is `disk.qcow2` in its folder, an overlay whose backing file is the
template. `remove` leaves it (as Remove-VM does); `remove_disk` deletes it, and the
folder with it once no VM is left there.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from core.backends.qemu.layout import read_json
from core.backends.qemu.registry import VMRegistry
from core.errors import BackendError, FileInUse, HostObjectExists, OperationTimeout


class Disks:
    """The disks of the VMs in a registry; `qemu-img` runs at most `op_timeout_s`."""

    def __init__(self, registry: VMRegistry, op_timeout_s: float) -> None:
        self.registry = registry
        self.op_timeout_s = op_timeout_s

    def qemu_img(self, *args: str, op: str) -> str:
        """Run `qemu-img ARGS` and return what it printed (BackendError when it fails)."""
        try:
            done = subprocess.run(
                ["qemu-img", *args],
                capture_output=True,
                text=True,
                timeout=self.op_timeout_s,
                check=False,
            )
        except FileNotFoundError:
            raise BackendError(
                "qemu-img is not installed (Debian package qemu-utils)", operation=op
            ) from None
        except subprocess.TimeoutExpired:
            raise OperationTimeout(f"qemu-img {args[0]} timed out", operation=op) from None
        if done.returncode != 0:
            raise BackendError(
                f"qemu-img {args[0]} failed: {done.stderr.strip()}", operation=op, raw=done.stderr
            )
        return done.stdout

    def image_info(self, path: str, op: str) -> dict[str, Any]:
        """`qemu-img info` of an image, even one a running QEMU holds."""
        info: dict[str, Any] = json.loads(self.qemu_img("info", "-U", "--output=json", path, op=op))
        return info

    def disk_path_for(self, vm_name: str, template_disk: str) -> str:
        return str(self.registry.files(vm_name).disk)

    def create_differencing_disk(self, parent_path: str, child_path: str) -> None:
        parent = Path(parent_path)
        child = Path(child_path)
        if not parent.is_file():
            raise BackendError(
                f"the template disk '{parent_path}' does not exist", operation="create_disk"
            )
        if child.exists():
            raise HostObjectExists(
                f"The file '{child_path}' already exists.", operation="create_disk"
            )
        fmt = str(self.image_info(str(parent.absolute()), "create_disk").get("format", "qcow2"))
        child.parent.mkdir(parents=True, exist_ok=True)
        self.qemu_img(
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            fmt,
            "-b",
            str(parent.absolute()),
            str(child),
            op="create_disk",
        )

    def remove_disk(self, path: str) -> None:
        """Delete a disk no VM uses: FileInUse when the VM of its folder still does. A VM
        folder left with no VM in it (a removed or half-made VM) goes too."""
        disk = Path(path).absolute()
        folder = disk.parent
        if folder.parent != self.registry.root or folder.name.startswith("."):
            with contextlib.suppress(FileNotFoundError):
                disk.unlink()
            return
        with self.registry.locked(folder.name):
            config = read_json(folder / "vm.json")
            if config is not None:
                used = Path(str(config.get("disk") or folder / "disk.qcow2")).absolute()
                if used == disk:
                    raise FileInUse(
                        f"The file '{path}' is in use by the virtual machine '{folder.name}'.",
                        vm=folder.name,
                        operation="remove_disk",
                    )
            with contextlib.suppress(FileNotFoundError):
                disk.unlink()
            if config is None and not (folder / "vm.json").exists():
                shutil.rmtree(folder, ignore_errors=True)
