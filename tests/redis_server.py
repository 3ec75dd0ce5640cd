"""A throwaway real `redis-server` for the Redis tests, and a key prefix per test.

Use from a test module:  `from redis_server import redis_prefix, redis_url  # noqa: F401`
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")  # as in conftest.py
START_TIMEOUT_S = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _start(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start the server and wait for PONG; retries on a new port if the chosen one was
    taken between picking and binding."""
    for _ in range(3):
        port = _free_port()
        log = (workdir / f"redis-{port}.log").open("wb")
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
        argv += ["--save", "", "--appendonly", "no"]  # no persistence: a scratch server
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            if _answers_ping(port):
                return proc, port
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    output = (workdir / f"redis-{port}.log").read_text(errors="replace")
    pytest.fail(f"redis-server did not answer PING within {START_TIMEOUT_S} s:\n{output}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a private redis-server (no persistence) that lives for the test run."""
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server not installed: apt-get install redis-server (or put it on PATH)"
        if IN_CI:
            pytest.fail(f"{message}; CI must run the Redis tests, not skip them")
        pytest.skip(message)
    proc, port = _start(binary, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, so tests never see each other's keys."""
    return f"t{uuid4().hex[:8]}:"
