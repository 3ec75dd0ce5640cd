"""Assembling a split model: order, checksums, reuse, and errors that name the package."""

import hashlib
import importlib

import pytest

from voxloop.errors import ModelFileError
from voxloop.providers.local.modelfiles import Chunk, ModelSpec, resolve_model


def _make_packages(root, parts: list[bytes], prefix: str) -> ModelSpec:
    chunks = []
    for n, data in enumerate(parts, start=1):
        pkg = root / f"{prefix}{n}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{n:02d}.bin").write_bytes(data)
        chunks.append(
            Chunk(
                package=f"{prefix}-dist{n}",
                module=f"{prefix}{n}",
                relpath=f"data/part{n:02d}.bin",
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    whole = b"".join(parts)
    importlib.invalidate_caches()
    return ModelSpec(
        name=f"{prefix}-model",
        upstream="test",
        license="test",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        chunks=tuple(chunks),
    )


@pytest.fixture
def packages(tmp_path, monkeypatch, request):
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    prefix = f"vxchunk_{request.node.name[5:20].replace('-', '_')}_"
    parts = [b"GGUF" + bytes(range(256)) * 40, b"middle" * 1000, b"tail" * 333]
    return root, prefix, parts, _make_packages(root, parts, prefix)


def test_assembles_in_order_and_reports_progress(packages, tmp_path):
    _, _, parts, spec = packages
    bars: dict[str, list[int]] = {}
    totals: dict[str, int] = {}

    def factory(description, total):
        totals[description] = total
        bars[description] = []
        return bars[description].append

    path = resolve_model(spec, tmp_path / "cache", factory)
    assert path.read_bytes() == b"".join(parts)
    # Two bars, each over the model's real size (not a doubled total), each reaching 100 %.
    name = spec.name
    assert list(totals) == [f"checking {name}", f"assembling {name}"]
    assert set(totals.values()) == {spec.size}
    assert all(sum(bars[d]) == totals[d] for d in totals)


def test_progress_bar_goes_to_stderr_not_stdout(capfd):
    from voxloop.providers.local.modelfiles import rich_progress

    advance = rich_progress("assembling test-model", 1000)
    advance(400)
    advance(600)
    out, err = capfd.readouterr()
    assert out == ""  # stdout carries only a command's result
    assert "assembling test-model" in err


def test_second_call_reuses_the_file(packages, tmp_path):
    root, prefix, _, spec = packages
    cache = tmp_path / "cache"
    first = resolve_model(spec, cache)
    mtime = first.stat().st_mtime_ns
    # Even with the packages gone, the finished, stamped file is reused untouched.
    for n in range(1, 4):
        (root / f"{prefix}{n}" / "data" / f"part{n:02d}.bin").unlink()
    assert resolve_model(spec, cache) == first
    assert first.stat().st_mtime_ns == mtime


def test_tampered_cache_file_is_rebuilt(packages, tmp_path):
    _, _, parts, spec = packages
    cache = tmp_path / "cache"
    path = resolve_model(spec, cache)
    path.write_bytes(b"corrupted")
    assert resolve_model(spec, cache).read_bytes() == b"".join(parts)


def test_corrupt_chunk_names_its_package_and_checksum(packages, tmp_path):
    root, prefix, _, spec = packages
    bad = root / f"{prefix}2" / "data" / "part02.bin"
    data = bytearray(bad.read_bytes())
    data[10] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as exc:
        resolve_model(spec, tmp_path / "cache")
    message = str(exc.value)
    assert f"{prefix}-dist2==0.9.0" in message
    assert spec.chunks[1].sha256 in message
    assert "\n" not in message
    assert not list((tmp_path / "cache").glob("*.gguf")), "no half-built model left behind"


def test_truncated_chunk_is_caught_by_size(packages, tmp_path):
    root, prefix, _, spec = packages
    (root / f"{prefix}3" / "data" / "part03.bin").write_bytes(b"tail")
    with pytest.raises(ModelFileError, match=rf"expected {spec.chunks[2].size}"):
        resolve_model(spec, tmp_path / "cache")


def test_missing_package_names_what_to_install(packages, tmp_path):
    root, prefix, _, spec = packages
    import shutil
    import sys

    shutil.rmtree(root / f"{prefix}1")
    sys.modules.pop(f"{prefix}1", None)
    importlib.invalidate_caches()
    with pytest.raises(ModelFileError) as exc:
        resolve_model(spec, tmp_path / "cache")
    assert f"pip install '{prefix}-dist1==0.9.0'" in str(exc.value)
    assert "not installed" in str(exc.value)
