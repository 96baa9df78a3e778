"""Choosing the accelerator: KVM when it really works, TCG otherwise.

`/dev/kvm` existing (and even accepting KVM_CREATE_VM) does not mean a Linux guest
boots under it: in nested setups the guest can hang right after the firmware. So
"KVM works" is decided by booting a direct-boot guest that prints the ready marker
under `-accel kvm` with a short timeout. The verdict is cached in the state
directory, keyed by the host's boot id and the emulator, so it is probed once per
host boot.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

READY_MARKER = "HVKUBE-READY"
CACHE_NAME = "qemu-accel.json"


@dataclass(frozen=True)
class BootFiles:
    """A guest that boots straight from a kernel and an initrd."""

    kernel: str
    initrd: str | None
    append: str


@dataclass(frozen=True)
class AccelChoice:
    accel: str  # "kvm" or "tcg"
    reason: str
    probed: bool = False


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def kvm_device_problem() -> str | None:
    """Why /dev/kvm cannot be used, or None when it opens read-write."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return "/dev/kvm does not exist"
    except OSError as exc:
        return f"/dev/kvm cannot be opened: {exc.strerror}"
    os.close(fd)
    return None


def probe_kvm(binary: str, guest: BootFiles, timeout_s: float = 12.0) -> tuple[bool, str]:
    """Boot `guest` under KVM; True when it prints the ready marker within the timeout."""
    with tempfile.TemporaryDirectory(prefix="hvkube-kvm-probe-") as tmp:
        log = Path(tmp) / "serial.log"
        argv = [
            binary,
            "-accel",
            "kvm",
            "-machine",
            "q35",
            "-m",
            "256",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            guest.kernel,
            "-append",
            guest.append,
            "-chardev",
            f"file,id=ser0,path={log}",
            "-serial",
            "chardev:ser0",
        ]
        if guest.initrd:
            argv += ["-initrd", guest.initrd]
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return False, f"cannot run {binary}: {exc.strerror}"
        try:
            while time.monotonic() - started < timeout_s:
                if proc.poll() is not None:
                    err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")
                    last = err.strip().splitlines()[-1:] or ["no message"]
                    return False, f"QEMU under KVM exited ({proc.returncode}): {last[0]}"
                with contextlib.suppress(OSError):
                    if READY_MARKER in log.read_text(errors="replace"):
                        seconds = time.monotonic() - started
                        return True, f"KVM probe guest ready in {seconds:.1f} s"
                time.sleep(0.1)
            return False, f"KVM probe guest not ready within {timeout_s:g} s (nested KVM hangs?)"
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()


def choose_accel(
    setting: str,
    binary: str,
    state_dir: Path,
    probe_guest: BootFiles | None,
    timeout_s: float = 12.0,
) -> AccelChoice:
    """The accelerator to use: the setting when it is kvm or tcg, else a cached probe."""
    if setting in {"kvm", "tcg"}:
        return AccelChoice(setting, f"set by qemu_accel={setting}")
    problem = kvm_device_problem()
    if problem is not None:
        return AccelChoice("tcg", problem)
    state_dir.mkdir(parents=True, exist_ok=True)
    cache = state_dir / CACHE_NAME
    key = {"boot_id": boot_id(), "binary": binary}
    with open(state_dir / (CACHE_NAME + ".lock"), "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            cached = json.loads(cache.read_text())
            if cached["key"] == key:
                return AccelChoice(cached["accel"], cached["reason"], probed=True)
        if probe_guest is None:
            # Not cached: without a guest that prints the marker, KVM cannot be verified.
            return AccelChoice("tcg", "KVM not verified: no probe guest (set qemu_accel=kvm)")
        # Said before, not after: the probe boots a guest and takes up to timeout_s.
        sys.stderr.write(
            f"hvkube: checking whether KVM works on this host (boots a test guest, up to "
            f"{timeout_s:g} s, once per host boot; qemu_accel=kvm or tcg skips it)\n"
        )
        sys.stderr.flush()
        ok, reason = probe_kvm(binary, probe_guest, timeout_s)
        choice = AccelChoice("kvm" if ok else "tcg", reason, probed=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": key, **asdict(choice)}))
        os.replace(tmp, cache)
        return choice
