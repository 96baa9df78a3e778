"""Small image helpers shared by backends: PNG encoding and a text card."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _widening_table() -> list[int]:
    """Per-band lookup from Pillow's truncated 5/6-bit widening to the rounded one."""
    five = [0] * 256
    six = [0] * 256
    for level in range(256):
        five[level] = six[level] = level
    for v in range(32):
        five[v * 255 // 31] = (v * 527 + 23) >> 6
    for v in range(64):
        six[v * 255 // 63] = (v * 259 + 33) >> 6
    return five + six + five


_WIDEN = _widening_table()


def rgb565_to_png(data: bytes, width: int, height: int) -> bytes:
    """Decode Hyper-V's thumbnail format (RGB565, little endian) to PNG.

    5- and 6-bit channels are widened to 8 bits with rounding, so that 31 and
    63 become 255 and 0 stays 0. Pillow unpacks the pixels in C (its `BGR;16` raw mode
    is this layout), then one table lookup a band turns its truncating widening into
    the rounded one: no Python loop over pixels.
    """
    expected = width * height * 2
    if len(data) < expected:
        raise ValueError(
            f"RGB565 image of {width}x{height} needs {expected} bytes, got {len(data)}"
        )
    image = Image.frombuffer("RGB", (width, height), data[:expected], "raw", "BGR;16", 0, 1)
    return png_bytes(image.point(_WIDEN))


def text_card(
    lines: list[str],
    size: tuple[int, int] = (640, 400),
    background: tuple[int, int, int] = (0, 90, 158),
    foreground: tuple[int, int, int] = (255, 255, 255),
) -> bytes:
    """A PNG of the given size with the lines written on it (a simulated screen)."""
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, size[1] // 16))
    y = size[1] // 6
    for line in lines:
        draw.text((size[0] // 12, y), line, fill=foreground, font=font)
        y += max(14, size[1] // 10)
    # A taskbar, so a thumbnail reads as a desktop.
    draw.rectangle((0, size[1] - size[1] // 14, size[0], size[1]), fill=(32, 32, 32))
    return png_bytes(image)
