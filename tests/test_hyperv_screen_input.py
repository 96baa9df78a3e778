"""Screen and input from the host: RGB565 thumbnails, Msvm_Keyboard, Msvm_SyntheticMouse."""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import pytest
from hyperv_helpers import fake_backend, make_running_vm
from PIL import Image

from core.backends.base import VMRef
from core.backends.hyperv import HyperVBackend
from core.backends.hyperv.keys import key_code, text_chunks
from core.errors import InvalidInput, InvalidVMState, Unsupported
from core.imaging import rgb565_to_png
from core.remote import rdp_command
from tests.fakes import fakeps


def _pixels(png: bytes) -> list[tuple[int, int, int]]:
    image = Image.open(io.BytesIO(png))
    assert image.mode == "RGB"
    return [image.getpixel((x, 0)) for x in range(image.size[0])]  # type: ignore[misc]


def test_rgb565_known_image_with_5_and_6_bit_expansion() -> None:
    words = [
        0x0000,  # black
        0xFFFF,  # white: 31 and 63 widen to 255
        0xF800,  # red 31
        0x07E0,  # green 63
        0x001F,  # blue 31
        0x8000,  # red 16 -> (16*527+23)>>6 = 132
        0x0400,  # green 32 -> (32*259+33)>>6 = 130
        0x0821,  # r1 g1 b1 -> 8, 4, 8
    ]
    data = b"".join(struct.pack("<H", w) for w in words)  # little endian
    assert _pixels(rgb565_to_png(data, 8, 1)) == [
        (0, 0, 0),
        (255, 255, 255),
        (255, 0, 0),
        (0, 255, 0),
        (0, 0, 255),
        (132, 0, 0),
        (0, 130, 0),
        (8, 4, 8),
    ]


def test_rgb565_every_level_is_monotonic_and_spans_0_to_255() -> None:
    reds = [(r << 11) for r in range(32)]
    greens = [(g << 5) for g in range(64)]
    data = b"".join(struct.pack("<H", w) for w in reds + greens)
    pixels = _pixels(rgb565_to_png(data, 96, 1))
    red_levels = [p[0] for p in pixels[:32]]
    green_levels = [p[1] for p in pixels[32:]]
    for levels in (red_levels, green_levels):
        assert levels[0] == 0 and levels[-1] == 255
        assert levels == sorted(levels) and len(set(levels)) == len(levels)
    # Same as the exact rounding of v * 255 / max.
    assert red_levels == [round(v * 255 / 31) for v in range(32)]
    assert green_levels == [round(v * 255 / 63) for v in range(64)]


def test_rgb565_every_pixel_value_decodes_to_the_rounded_levels() -> None:
    words = range(65536)
    data = b"".join(struct.pack("<H", w) for w in words)
    image = Image.open(io.BytesIO(rgb565_to_png(data, 256, 256)))
    got = image.tobytes()
    for w in words:
        r, g, b = (w >> 11) & 31, (w >> 5) & 63, w & 31
        expected = (round(r * 255 / 31), round(g * 255 / 63), round(b * 255 / 31))
        assert tuple(got[3 * w : 3 * w + 3]) == expected, hex(w)


def test_rgb565_short_data_is_refused() -> None:
    with pytest.raises(ValueError, match="needs 8 bytes"):
        rgb565_to_png(b"\x00" * 6, 2, 2)


@pytest.fixture
def backend(tmp_path: Path) -> HyperVBackend:
    b = fake_backend(tmp_path)
    yield b
    b.close()


@pytest.fixture
def vm(backend: HyperVBackend) -> VMRef:
    return make_running_vm(backend)


def test_screenshot_over_the_session_is_a_png_at_the_vm_resolution(
    backend: HyperVBackend, vm: VMRef
) -> None:
    png = backend.screenshot(vm)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (640, 400)
    # The simulated desktop's blue (0, 90, 158) after a round trip through RGB565.
    assert image.getpixel((1, 1)) == (0, 89, 156)


def test_typing_goes_in_chunks_of_at_most_512(
    backend: HyperVBackend, vm: VMRef, tmp_path: Path
) -> None:
    text = "x" * 1100 + "\tok\n"
    backend.send_text(vm, text)
    typed = [e["text"] for e in fakeps.read_input_log(tmp_path) if e["op"] == "type_text"]
    assert [len(t) for t in typed] == [512, 512, 80]
    assert "".join(typed) == text


def test_keys_and_ctrl_alt_del(backend: HyperVBackend, vm: VMRef, tmp_path: Path) -> None:
    backend.send_key(vm, "enter")
    backend.send_key(vm, "F5")
    backend.send_key(vm, "a")
    backend.send_key(vm, "0x5B")
    backend.send_key(vm, "ctrl+alt+del")
    log = fakeps.read_input_log(tmp_path)
    assert [e.get("key") for e in log] == [0x0D, 0x74, 0x41, 0x5B, None]
    assert log[-1]["op"] == "ctrl_alt_del"


def test_click(backend: HyperVBackend, vm: VMRef, tmp_path: Path) -> None:
    backend.click(vm, 100, 200)
    backend.click(vm, 5, 6, button="right")
    clicks = [(e["x"], e["y"], e["button"]) for e in fakeps.read_input_log(tmp_path)]
    assert clicks == [(100, 200, 1), (5, 6, 2)]


def test_bad_input_is_refused_before_anything_is_sent(backend: HyperVBackend, vm: VMRef) -> None:
    with pytest.raises(InvalidInput, match="printable ASCII"):
        backend.send_text(vm, "héllo")
    with pytest.raises(InvalidInput, match="empty"):
        backend.send_text(vm, "")
    with pytest.raises(InvalidInput, match="unknown key"):
        backend.send_key(vm, "hyperspace")
    with pytest.raises(InvalidInput, match="--button"):
        backend.click(vm, 1, 1, button="thumb")
    with pytest.raises(InvalidInput, match="X must be"):
        backend.click(vm, -1, 1)


def test_input_to_a_vm_that_is_not_running_is_an_invalid_state(
    backend: HyperVBackend, vm: VMRef
) -> None:
    backend.save(vm)
    with pytest.raises(InvalidVMState):
        backend.send_key(vm, "enter")


def test_key_names() -> None:
    assert key_code("Esc") == 0x1B
    assert key_code("f12") == 0x7B
    assert key_code("7") == 0x37
    with pytest.raises(InvalidInput):
        key_code("0x1FF")
    assert text_chunks("a" * 512) == ["a" * 512]


@pytest.mark.skipif(sys.platform == "win32", reason="vmconnect exists on Windows")
def test_console_says_why_it_cannot_run_here(backend: HyperVBackend, vm: VMRef) -> None:
    with pytest.raises(Unsupported, match=r"vmconnect\.exe"):
        backend.console(vm)


def test_rdp_client_command_or_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    if sys.platform in {"win32", "darwin"}:
        assert "10.0.0.5" in " ".join(rdp_command("10.0.0.5"))
    else:
        with pytest.raises(Unsupported, match="no RDP client"):
            rdp_command("10.0.0.5")
