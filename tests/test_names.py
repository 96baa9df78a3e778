"""The one name rule: what Hyper-V, file systems and PowerShell-as-data all accept."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.names import check_name, check_path_text, name_problem, parse_json_object

HOSTILE = [
    "x'; Remove-VM -Name * -Force; '",
    "$(calc)",
    "`whoami`",
    'a"b',
    "a;b",
    "agent-*",
    "vm?",
    "..",
    "../etc",
    "a/b",
    "a\\b",
    "line\nbreak",
    "tab\there",
    "nul\x00byte",
    "",
    "x" * 49,
    "-leading-dash",
    "trailing.",
    "ünïcode",
    "a\u2019b",  # a right single quote closes a PowerShell string
    "con",
    "COM1",
    "bad\udcffutf8",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_with_a_reason(name: str) -> None:
    problem = name_problem(name)
    assert problem is not None
    with pytest.raises(InvalidInput) as caught:
        check_name(name, "pool name")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("pool name")


@pytest.mark.parametrize("name", ["win11-chrome", "browser-pool", "a", "A.b_c-9", "x" * 48])
def test_ordinary_names_pass(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "path", ["", "   ", "C:\\a\\..\\b.vhdx", "../x.vhdx", "C:\\*.vhdx", "a\nb"]
)
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidInput):
        check_path_text(path)


def test_json_input_must_be_an_object() -> None:
    assert parse_json_object('{"dest": "NYC"}') == {"dest": "NYC"}
    for bad in ["{bad", "[1, 2]", '"text"', "", "\udcff"]:
        with pytest.raises(InvalidInput):
            parse_json_object(bad)
