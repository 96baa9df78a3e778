"""Pictures of the dashboard for the README: one per view, plus help, in screenshots/.

The data is the demo's (`hvkube demo`), seeded at simulated speed 0 with every time fixed,
so the pictures only change when the dashboard does. SVG (Textual's own export); with
--png also a PNG through rsvg-convert, whose font fallback can shift coloured cells by a
column, so the SVGs are the ones to show.

    python scripts/make_screenshots.py [--size 120x36] [--png]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import open_engine  # noqa: E402
from hvkube_tui.app import make_app  # noqa: E402
from hvkube_tui.demo import demo_settings, seed_demo  # noqa: E402
from tests.tui_support import NOW, fixed_clock, freeze_times, steady_screens  # noqa: E402

# Times and screens fixed as in the snapshot tests: the README shows what they check.
SHOTS = (
    ("pools", "pools", "browser", []),
    ("templates", "templates", "win11-base", []),
    ("vms", "vms", "browser-001", []),
    ("agents", "agents", "5", []),
    ("events", "events", None, []),
    ("help", "vms", "browser-001", ["question_mark"]),
)


async def shoot(directory: Path, out: Path, size: tuple[int, int]) -> list[Path]:
    written: list[Path] = []
    for name, view, row, keys in SHOTS:
        settings = demo_settings(directory, scale=0.0)
        engine = open_engine(settings)
        freeze_times(engine, NOW)
        steady_screens(engine)
        app = make_app(settings, engine=engine, clock=fixed_clock(NOW), thumbnail_interval=0)
        async with app.run_test(size=size) as pilot:
            while not app.loaded.is_set():
                await pilot.pause(0.02)
            if row is None:
                app.action_show_view(view)
            else:
                app.select_row(view, row)
            for _ in range(3):
                start = app.polls
                app.refresh_now()
                while app.polls < start + 1:
                    await pilot.pause(0.02)
            while any(w.is_running and w.group == "thumbnail" for w in app.workers):
                await pilot.pause(0.02)
            if keys:
                await pilot.press(*keys)
            await pilot.pause()
            path = out / f"{name}.svg"
            path.write_text(app.export_screenshot(title=f"hvkube: {name}"), encoding="utf-8")
            written.append(path)
        engine.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="120x36", help="terminal size, COLSxROWS")
    parser.add_argument("--out", default=str(REPO / "screenshots"))
    parser.add_argument("--png", action="store_true", help="also PNG (needs rsvg-convert)")
    args = parser.parse_args()
    cols, rows = (int(n) for n in args.size.split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hvkube-shots-") as tmp:
        directory = Path(tmp) / "demo"
        seed_demo(directory, scale=0.0)
        written = asyncio.run(shoot(directory, out, (cols, rows)))
    converter = shutil.which("rsvg-convert") if args.png else None
    if args.png and converter is None:
        raise SystemExit("--png needs rsvg-convert (apt-get install librsvg2-bin)")
    for svg in written:
        print(svg.relative_to(REPO) if svg.is_relative_to(REPO) else svg)
        if converter:
            png = svg.with_suffix(".png")
            subprocess.run([converter, "-w", str(cols * 12), str(svg), "-o", str(png)], check=True)
            print(png.relative_to(REPO) if png.is_relative_to(REPO) else png)


if __name__ == "__main__":
    main()
