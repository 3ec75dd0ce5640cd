"""One tested set of versions: what `make run` and `make test` install is pinned."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from voxloop.providers.local.llm_probe import TESTED_VERSION

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"constraints.txt: {line!r} is not an exact pin"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return [r for r in reqs if canonicalize_name(r.name) != "voxloop"]


def test_every_dependency_is_pinned_to_a_version_it_allows():
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not pinned in constraints.txt (run: make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, which pyproject.toml's "
            f"{req.specifier} does not allow (run: make lock)"
        )


def test_the_llm_engine_is_one_tested_version_everywhere():
    llama = next(r for r in _requirements() if r.name == "llama-cpp-python")
    assert str(llama.specifier) == f"=={TESTED_VERSION}"  # pyproject.toml
    assert _pins()["llama-cpp-python"] == TESTED_VERSION  # constraints.txt
    assert "--constraint constraints.txt" in (ROOT / "Makefile").read_text()
    assert "-DGGML_NATIVE=OFF" in (ROOT / "Makefile").read_text()
