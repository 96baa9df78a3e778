"""Small image helpers shared by backends: PNG encoding and a text card."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _rgb565_levels() -> list[int]:
    """A `point` table from the levels Pillow's RGB565 decoder gives to ours: Pillow widens
    a 5- or 6-bit channel by truncating, we round; each decoded level maps to one of ours."""
    levels = bytearray()
    for v in range(64):
        levels += (((v & 31) << 11) | (v << 5) | (v & 31)).to_bytes(2, "little")
    decoded = Image.frombytes("RGB", (64, 1), bytes(levels), "raw", "BGR;16").tobytes()
    table = list(range(768))
    for v in range(64):
        red, green, blue = decoded[3 * v : 3 * v + 3]
        table[256 + green] = (v * 259 + 33) >> 6
        if v < 32:
            table[red] = table[512 + blue] = (v * 527 + 23) >> 6
    return table


_RGB565_LEVELS: list[int] = []


def rgb565_to_png(data: bytes, width: int, height: int) -> bytes:
    """Decode Hyper-V's thumbnail format (RGB565, little endian) to PNG.

    5- and 6-bit channels are widened to 8 bits with rounding, so that 31 and
    63 become 255 and 0 stays 0. Pillow decodes (in C, a few ms a frame where a Python
    loop took 0.7 s) and a level table applies the rounding.
    """
    expected = width * height * 2
    if len(data) < expected:
        raise ValueError(
            f"RGB565 image of {width}x{height} needs {expected} bytes, got {len(data)}"
        )
    if not _RGB565_LEVELS:
        _RGB565_LEVELS.extend(_rgb565_levels())
    image = Image.frombytes("RGB", (width, height), bytes(data[:expected]), "raw", "BGR;16")
    return png_bytes(image.point(_RGB565_LEVELS))


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
