"""What a guest reports about itself is hostile input: addresses, screen sizes, text."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from hyperv_helpers import engine_on, fake_backend, make_running_vm, sim_host
from PIL import Image

from core.backends.base import VMRef
from core.backends.sim import SimHost
from core.engine import Engine
from core.models import VMState
from core.reported import MAX_SCREEN, bounded, ipv4, screen_request, usable_ipv4
from tests.fakes import fakeps

HOSTILE = [
    "172.20.0.\u00b2",  # '²': str.isdigit() accepts it, int() raises ValueError
    "\u0661\u0667\u0662.\u0662\u0660.\u0660.\u0665",  # 172.20.0.5 in Arabic-Indic digits
    "\uff11\uff17\uff12.20.0.5",  # fullwidth digits
    "172.20.0.5; rm -rf /",
    "http://evil.example/",
    "172.20.0.5" + "0" * 100_000,
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_an_address_is_ascii_then_ipaddress(raw: str) -> None:
    assert ipv4(raw) is None and usable_ipv4(raw) is None


def test_good_addresses_pass_and_unusable_ones_are_told_apart() -> None:
    assert ipv4(" 10.0.0.7 ") == "10.0.0.7"
    assert ipv4("127.0.0.1") == "127.0.0.1"  # QEMU's user networking: loopback is real there
    for unusable in ("127.0.0.1", "169.254.1.1", "0.0.0.0", "224.0.0.5", "255.255.255.255"):
        assert usable_ipv4(unusable) is None


def test_text_is_bounded() -> None:
    assert bounded("x" * 10) == "x" * 10
    cut = bounded("y" * 100_000, 50)
    assert len(cut) == 50 and cut.endswith("...")


@pytest.fixture
def sim_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = engine_on("sim", tmp_path)
    engine.provision_pool("web")
    # A guest that never reports a usable address is waited for this long after a resume.
    engine.settings = engine.settings.replace(ready_timeout_s=1.0)
    yield engine
    engine.close()


@pytest.mark.parametrize("raw", HOSTILE[:3])
def test_a_hostile_address_is_no_address_and_the_vm_is_not_left_resuming(
    sim_engine: Engine, raw: str
) -> None:
    """The guest's report reaches the engine as the host passes it on (unchecked on the
    simulated host, as on Hyper-V): acquire hands out the VM without an address, records
    none, and leaves nothing half-way."""
    host = sim_engine.backend
    assert isinstance(host, SimHost)
    vm = sim_engine.get_vm("web-001")
    ref = VMRef(vm.name, vm.host_id or "")
    host.start(ref)  # running, so the guest can report
    host.guest_reports(ref, raw)
    host.save(ref)
    acquired = sim_engine.acquire("web")
    assert acquired.ip is None
    assert sim_engine.get_vm(acquired.name).ip is None
    assert sim_engine.vm_ip(acquired.name) is None
    states = {v.name: v.state for v in sim_engine.list_vms()}
    assert VMState.RESUMING not in states.values()
    assert VMState.PROVISIONING not in states.values()
    assert states[acquired.name] is VMState.RUNNING


def test_hyperv_kvp_fallback_refuses_hostile_addresses(tmp_path: Path) -> None:
    """Hyper-V over the fake PowerShell host: the adapter reports nothing, the guest's KVP
    item carries Arabic-Indic digits; no address comes back."""
    backend = fake_backend(tmp_path)
    try:
        ref = make_running_vm(backend)
        host = sim_host(tmp_path)
        host.guest_reports(ref, HOSTILE[1])
        assert backend.ip_address(ref) is None
        host.guest_reports(ref, "10.1.2.3")
        assert backend.ip_address(ref) == "10.1.2.3"
    finally:
        backend.close()


def test_screen_request_is_bounded_and_keeps_the_shape() -> None:
    assert screen_request(640, 480) == (640, 480)
    assert screen_request(0, 0) == (640, 480)
    assert screen_request(3840, 2160) == (1920, 1080)
    w, h = screen_request(7680, 4320)
    assert (w, h) == (1920, 1080)
    w, h = screen_request(65535, 3)
    assert w <= MAX_SCREEN[0] and h >= 1
    w, h = screen_request(10**12, 10**12)
    assert w <= MAX_SCREEN[0] and h <= MAX_SCREEN[1]


@pytest.mark.parametrize("screen", [(3840, 2160), (7680, 4320)])
def test_a_4k_or_8k_guest_screen_is_asked_for_at_a_bounded_size(
    tmp_path: Path, screen: tuple[int, int]
) -> None:
    backend = fake_backend(tmp_path)
    try:
        ref = make_running_vm(backend)
        fakeps.set_screen(tmp_path, ref.id, *screen)
        png = backend.screenshot(ref)
    finally:
        backend.close()
    asked = fakeps.read_thumbnail_sizes(tmp_path)
    assert asked == [(1920, 1080)]
    image = Image.open(io.BytesIO(png))
    assert image.size == (1920, 1080)
