"""`hvkube ui` and `hvkube demo`, plugged into the core CLI through the
`hvkube.commands` entry point group (core never imports the dashboard)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any


def _screenshots(args: argparse.Namespace, ctx: Any) -> Path:
    """Where `p` saves: --output, else the setting, else the user's data folder."""
    return Path(args.output) if args.output else Path(ctx.settings.screenshots_path())


def cmd_ui(args: argparse.Namespace, ctx: Any) -> int:
    from hvkube_tui.app import make_app

    app = make_app(ctx.settings, engine=ctx.engine, screenshot_dir=_screenshots(args, ctx))
    app.run()
    return 0


def cmd_demo(args: argparse.Namespace, ctx: Any) -> int:
    from hvkube_tui.app import make_app
    from hvkube_tui.demo import demo_activity, seed_demo

    keep = args.dir is not None
    directory = Path(args.dir) if keep else Path(tempfile.mkdtemp(prefix="hvkube-demo-"))
    if keep and directory.exists() and any(directory.iterdir()):
        sys.stderr.write(f"hvkube: error: {directory} is not empty; give a new folder\n")
        return 2
    sys.stderr.write(f"hvkube demo: seeding a simulated host in {directory} …\n")
    try:
        settings = seed_demo(directory)
        settings = settings.replace(readonly=ctx.settings.readonly, keys=dict(ctx.settings.keys))
        app = make_app(
            settings,
            background=partial(demo_activity, settings),
            title="demo",
            # The demo's folder goes away on exit; screenshots (p) go to the user's data
            # folder (or --output), and a controller started with R ends with the demo.
            screenshot_dir=_screenshots(args, ctx),
            ephemeral=not keep,
        )
        app.run()
    finally:
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
    if keep:
        sys.stderr.write(f"hvkube demo: the demo database is kept in {directory}\n")
    return 0


SCREENSHOTS_HELP = (
    "folder for screenshots taken with p (default: the screenshot_dir setting, else "
    "'screenshots' in the data folder)"
)


def register(commands: Any, sub: Any) -> None:
    p = sub(
        commands,
        "ui",
        cmd_ui,
        "open the dashboard on the configured database and backend (also: no command)",
    )
    p.add_argument("--output", metavar="DIR", help=SCREENSHOTS_HELP)
    p = sub(
        commands,
        "demo",
        cmd_demo,
        "open the dashboard on a fresh simulated host with demo pools, VMs and agents",
    )
    p.add_argument(
        "--dir", metavar="PATH", help="keep the demo database in this new folder (default: temp)"
    )
    p.add_argument("--output", metavar="DIR", help=SCREENSHOTS_HELP)
