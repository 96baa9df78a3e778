"""What a workload did, as it saw it: one JSON line per step, written before and after the
engine call, so that a SIGKILL at any moment leaves an honest record.

Lines (each with "w", the worker):
  {"ev": "intent", "key": K}                 about to submit agent K (the workflow name)
  {"ev": "submitted", "key": K, "id": N}     submit_agent returned agent N
  {"ev": "claim", "vm": V, "holder": H, "t": T}    acquire returned V to H at time T
  {"ev": "unclaim", "vm": V, "holder": H, "t": T}  about to release V (or finish its agent)
  {"ev": "lost", "vm": V, "holder": H, "why": W}   a VM taken from its holder while held
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


class JournalWriter:
    def __init__(self, path: Path, worker: str) -> None:
        self.worker = worker
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, ev: str, **fields: Any) -> None:
        # One write per line, flushed at once: a SIGKILL keeps every line written before it.
        self._file.write(json.dumps({"w": self.worker, "ev": ev, **fields}) + "\n")
        self._file.flush()

    def claim(self, vm: str, holder: str) -> None:
        self.write("claim", vm=vm, holder=holder, t=time.time())

    def unclaim(self, vm: str, holder: str) -> None:
        self.write("unclaim", vm=vm, holder=holder, t=time.time())


@dataclass
class Journal:
    intents: set[str] = field(default_factory=set)
    submitted: dict[str, int] = field(default_factory=dict)
    claims: list[dict[str, Any]] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, folder: Path) -> Journal:
        journal = cls()
        for path in sorted(folder.glob("journal-*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by the kill
                journal.add(entry)
        return journal

    def add(self, entry: dict[str, Any]) -> None:
        ev = entry["ev"]
        if ev == "intent":
            self.intents.add(entry["key"])
        elif ev == "submitted":
            self.submitted[entry["key"]] = entry["id"]
        elif ev in {"claim", "unclaim"}:
            self.claims.append(entry)
        elif ev == "lost":
            self.lost.append(
                f"{entry['vm']}: taken from {entry['holder']} while held ({entry['why']})"
            )

    def claim_spans(self) -> dict[str, list[tuple[float, float, str]]]:
        """VM -> (from, to, holder) for every claim; a claim never given back runs forever."""
        spans: dict[str, list[tuple[float, float, str]]] = {}
        open_: dict[tuple[str, str], float] = {}
        for entry in sorted(self.claims, key=lambda e: e["t"]):
            key = (entry["vm"], entry["holder"])
            if entry["ev"] == "claim":
                open_[key] = entry["t"]
            elif key in open_:
                spans.setdefault(entry["vm"], []).append((open_.pop(key), entry["t"], key[1]))
        for (vm, holder), start in open_.items():
            spans.setdefault(vm, []).append((start, float("inf"), holder))
        return spans

    def open_claims(self) -> dict[str, str]:
        """VM -> holder for claims never given back (the worker died holding them)."""
        return {
            vm: holder
            for vm, spans in self.claim_spans().items()
            for _, end, holder in spans
            if end == float("inf")
        }
