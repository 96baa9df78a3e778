"""Small image helpers shared by backends: PNG encoding and a text card."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def rgb565_to_png(data: bytes, width: int, height: int) -> bytes:
    """Decode Hyper-V's thumbnail format (RGB565, little endian) to PNG.

    5- and 6-bit channels are widened to 8 bits with rounding, so that 31 and
    63 become 255 and 0 stays 0.
    """
    expected = width * height * 2
    if len(data) < expected:
        raise ValueError(
            f"RGB565 image of {width}x{height} needs {expected} bytes, got {len(data)}"
        )
    out = bytearray(width * height * 3)
    for i in range(width * height):
        pixel = data[2 * i] | (data[2 * i + 1] << 8)
        r5 = (pixel >> 11) & 0x1F
        g6 = (pixel >> 5) & 0x3F
        b5 = pixel & 0x1F
        out[3 * i] = (r5 * 527 + 23) >> 6
        out[3 * i + 1] = (g6 * 259 + 33) >> 6
        out[3 * i + 2] = (b5 * 527 + 23) >> 6
    return png_bytes(Image.frombytes("RGB", (width, height), bytes(out)))


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
