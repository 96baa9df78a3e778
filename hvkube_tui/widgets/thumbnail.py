"""A VM's screen drawn in the terminal: each cell is `▀`, its foreground the upper
pixel and its background the lower one, so a cell shows two pixels."""

from __future__ import annotations

import hashlib
import io
from typing import TYPE_CHECKING

from PIL import Image
from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from core.errors import HvkubeError
from hvkube_tui.messages import ThumbnailFailed, ThumbnailReady

if TYPE_CHECKING:
    from core.engine import Engine

HALF_BLOCK = "▀"


def fit_size(image_size: tuple[int, int], cols: int, rows: int) -> tuple[int, int]:
    """Pixel size (width, height) that fits cols x (2*rows) keeping the aspect ratio."""
    width, height = image_size
    if width <= 0 or height <= 0 or cols <= 0 or rows <= 0:
        return (0, 0)
    scale = min(cols / width, (2 * rows) / height)
    return (max(1, round(width * scale)), max(2, round(height * scale)))


def png_to_halfblocks(data: bytes, cols: int, rows: int) -> Text:
    """Decode a PNG and draw it in at most `cols` x `rows` cells with half blocks."""
    with Image.open(io.BytesIO(data)) as source:
        image = source.convert("RGB")
    width, height = fit_size(image.size, cols, rows)
    if width == 0:
        return Text()
    if height % 2:
        height += 1
    small = image.resize((width, height), Image.Resampling.BOX)
    pixels = small.tobytes()  # RGB, row by row: three bytes a pixel
    text = Text(no_wrap=True, overflow="crop")
    styles: dict[tuple[bytes, bytes], Style] = {}
    row_bytes = 3 * width
    for y in range(0, height, 2):
        if y:
            text.append("\n")
        for x in range(width):
            at = y * row_bytes + 3 * x
            top = pixels[at : at + 3]
            bottom = pixels[at + row_bytes : at + row_bytes + 3]
            style = styles.get((top, bottom))
            if style is None:
                style = Style(color=f"#{top.hex()}", bgcolor=f"#{bottom.hex()}")
                styles[(top, bottom)] = style
            text.append(HALF_BLOCK, style)
    return text


def look(
    engine: Engine, vm: str, cols: int, rows: int, shown: str | None
) -> ThumbnailReady | ThumbnailFailed:
    """The VM's screen now, drawn for `cols` x `rows` cells (call it in a worker thread).
    Straight from the host: a look is no lifecycle event. When its digest is `shown` (the
    same picture at the same size), the image is left empty: nothing to draw again."""
    try:
        data = engine.backend.screenshot(engine.ref(engine.get_vm(vm)))
    except HvkubeError as exc:
        return ThumbnailFailed(vm, exc.message)
    except Exception as exc:
        return ThumbnailFailed(vm, f"{type(exc).__name__}: {exc}")
    digest = hashlib.blake2b(data, digest_size=8).hexdigest() + f"{cols}x{rows}"
    image = Text() if digest == shown else png_to_halfblocks(data, cols, rows)
    return ThumbnailReady(vm, digest, image)


class Thumbnail(Static):
    """Shows the selected VM's screen; the app feeds it PNG bytes from a worker."""

    def show_text(self, message: str) -> None:
        self.update(Text(message, style="dim"))
