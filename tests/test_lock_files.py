"""The lock files agree with pyproject.toml (issue 13, item 6).

``scripts/install`` installs ``requirements*.lock`` with ``--require-hashes``; these tests
fail when a dependency was added or its range changed without running ``scripts/lock``,
and when the three files pin one package at different versions.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: Each lock file and the optional-dependency groups it holds besides the runtime ones.
LOCKS = {
    "requirements.lock": (),
    "requirements-dev.lock": ("dev",),
    "requirements-test.lock": ("dev", "test"),
}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def pins(lock: str) -> dict[str, Version]:
    text = (ROOT / lock).read_text(encoding="utf-8")
    return {canonicalize_name(name): Version(version) for name, version in _PIN.findall(text)}


def wanted(groups: tuple[str, ...]) -> list[Requirement]:
    project = PYPROJECT["project"]
    lines = [*project["dependencies"], *PYPROJECT["build-system"]["requires"]]
    for group in groups:
        lines += project["optional-dependencies"][group]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_requirement_is_pinned_within_its_range(lock: str) -> None:
    pinned = pins(lock)
    for requirement in wanted(LOCKS[lock]):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is not in {lock}: run scripts/lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside {requirement}: run scripts/lock"
        )


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_pin_has_hashes(lock: str) -> None:
    text = (ROOT / lock).read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert len(blocks) == len(pins(lock))
    for block in blocks:
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_three_files_agree_and_only_the_test_file_has_test_tools() -> None:
    runtime, dev, test = (pins(lock) for lock in sorted(LOCKS, key=len))
    for smaller in (runtime, dev):
        assert {name: test[name] for name in smaller} == smaller
    assert "pytest" in test and "pytest" not in dev
    assert "honcho" in dev and "honcho" not in runtime
    assert "ruff" in dev and "ruff" not in runtime
