"""Decoding a Hyper-V thumbnail (RGB565) to PNG: Pillow against the per-pixel Python loop.

The guest sets its screen size; the host is now asked for at most 1920x1200, so the figure
that matters is the decode at that size, and what a 4K or 8K screen would have cost before.

    python bench/screenshot.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image

from core.imaging import png_bytes, rgb565_to_png, text_card


def per_pixel(data: bytes, width: int, height: int) -> bytes:
    """The decoder as it was: one Python step a pixel, then the same PNG encoding."""
    out = bytearray(width * height * 3)
    for i in range(width * height):
        pixel = data[2 * i] | (data[2 * i + 1] << 8)
        out[3 * i] = (((pixel >> 11) & 0x1F) * 527 + 23) >> 6
        out[3 * i + 1] = (((pixel >> 5) & 0x3F) * 259 + 33) >> 6
        out[3 * i + 2] = ((pixel & 0x1F) * 527 + 23) >> 6
    return png_bytes(Image.frombytes("RGB", (width, height), bytes(out)))


def screen(width: int, height: int) -> bytes:
    """A desktop-like screen (text on a plain background, a taskbar) as RGB565 bytes."""
    import io

    image = Image.open(io.BytesIO(text_card(["hvkube", "soak"], size=(width, height))))
    r, g, b = image.convert("RGB").split()
    words = bytearray()
    for rr, gg, bb in zip(r.tobytes(), g.tobytes(), b.tobytes(), strict=True):
        pixel = ((rr >> 3) << 11) | ((gg >> 2) << 5) | (bb >> 3)
        words += pixel.to_bytes(2, "little")
    return bytes(words)


def median_s(fn: object, repeat: int, *args: object) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(*args)  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print("size        | Pillow median | per-pixel median | ratio")
    for width, height in ((640, 400), (1920, 1080), (3840, 2160)):
        data = screen(width, height)
        fast = median_s(rgb565_to_png, args.repeat, data, width, height)
        assert rgb565_to_png(data, width, height) == per_pixel(data, width, height)
        slow = median_s(per_pixel, max(1, args.repeat // 2), data, width, height)
        print(
            f"{width}x{height:<6} | {fast * 1000:10.1f} ms | {slow * 1000:13.1f} ms | "
            f"{slow / fast:5.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
