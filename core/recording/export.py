"""A recording as one animated file: WebP or GIF (Pillow), MP4 (imageio-ffmpeg, optional).

Each entry with a frame becomes a frame shown until the next entry's time (at least 100 ms,
at most 5 s, so long idle spells do not drag), with the action that came before it written
in a band under the screen.
"""

from __future__ import annotations

import io
import tempfile
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import InvalidInput, NotFound
from core.recording.archive import Archive, Entry

if TYPE_CHECKING:
    from PIL import Image

FORMATS = ("webp", "gif", "mp4")
MIN_MS, MAX_MS = 100, 5000
MP4_FPS = 10


def describe(action: dict[str, Any] | None) -> str:
    """One line saying what an action did, as shown under its frame."""
    if not action:
        return ""
    kind = action.get("kind")
    source = f"[{action['source']}] " if action.get("source") else ""
    if kind == "type":
        return f"{source}typed {action.get('text', '')!r}"
    if kind == "key":
        return f"{source}pressed {action.get('keys', '')}"
    if kind == "click":
        double = "double " if action.get("double") else ""
        where = f"{action.get('x')},{action.get('y')}"
        return f"{source}{double}{action.get('button', 'left')} click at {where}"
    if kind == "move":
        return f"{source}pointer to {action.get('x')},{action.get('y')}"
    return f"{source}{kind}"


def format_for(path: str, given: str | None = None) -> str:
    fmt = (given or Path(path).suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise InvalidInput(f"cannot export to {path!r}: give a file ending in .webp, .gif or .mp4")
    return fmt


def _durations(entries: list[Entry]) -> list[int]:
    times = [datetime.fromisoformat(e.at).timestamp() for e in entries]
    out = []
    for index, start in enumerate(times):
        end = times[index + 1] if index + 1 < len(times) else start + 1.0
        out.append(int(min(MAX_MS, max(MIN_MS, (end - start) * 1000))))
    return out


def _captioned(image: Image.Image, text: str, size: tuple[int, int]) -> Image.Image:
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    band = max(18, height // 20)
    canvas = Image.new("RGB", (width, height + band), (16, 16, 16))
    canvas.paste(image.convert("RGB").resize(size) if image.size != size else image.convert("RGB"))
    if text:
        font = ImageFont.load_default(size=max(10, band - 6))
        ImageDraw.Draw(canvas).text((4, height + 2), text[:200], fill=(255, 255, 255), font=font)
    return canvas


def frames(archive: Archive, rec_id: str) -> tuple[list[Image.Image], list[int]]:
    """The recording's frames, captioned, and how long each is shown in milliseconds."""
    from PIL import Image

    entries = [e for e in archive.entries(rec_id) if e.frame is not None]
    if not entries:
        raise NotFound(f"recording {rec_id!r} has no frames yet")
    durations = _durations(entries)
    first = Image.open(io.BytesIO(archive.frame(rec_id, entries[0].frame or "")))
    size = first.size
    images = []
    for entry in entries:
        with Image.open(io.BytesIO(archive.frame(rec_id, entry.frame or ""))) as image:
            images.append(_captioned(image, describe(entry.action), size))
    return images, durations


def export(archive: Archive, rec_id: str, fmt: str) -> bytes:
    """The recording encoded as `fmt` (webp, gif or mp4)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ModuleNotFoundError:
            raise InvalidInput(
                "MP4 export needs imageio-ffmpeg; install it with: pip install 'hvkube[video]', "
                "or export to .webp or .gif"
            ) from None
    images, durations = frames(archive, rec_id)
    if fmt == "mp4":
        return _mp4(images, durations)
    buffer = io.BytesIO()
    options: dict[str, Any] = {"loop": 0, "duration": durations, "save_all": True}
    if fmt == "webp":
        options.update(lossless=True, quality=80, method=4)
    images[0].save(buffer, format=fmt.upper(), append_images=images[1:], **options)
    return buffer.getvalue()


def _mp4(images: list[Image.Image], durations: list[int]) -> bytes:
    import imageio_ffmpeg

    width, height = images[0].size
    even = (width + width % 2, height + height % 2)
    with tempfile.TemporaryDirectory(prefix="hvkube-mp4-") as tmp:
        out = Path(tmp) / "out.mp4"
        writer = imageio_ffmpeg.write_frames(
            str(out), even, fps=MP4_FPS, codec="libx264", macro_block_size=1, pix_fmt_out="yuv420p"
        )
        writer.send(None)
        from PIL import Image

        for image, ms in zip(images, durations, strict=True):
            padded = Image.new("RGB", even)
            padded.paste(image)
            data = padded.tobytes()
            for _ in range(max(1, round(ms * MP4_FPS / 1000))):
                writer.send(data)
        writer.close()
        return out.read_bytes()
