import numpy as np
import pytest

from voxloop.audio.formats import float_to_pcm16, pcm16_to_float, read_audio, write_wav
from voxloop.audio.resample import StreamResampler, resample
from voxloop.errors import AudioError


def test_pcm16_round_trip():
    pcm = np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16)
    back = float_to_pcm16(pcm16_to_float(pcm.tobytes()))
    assert np.array_equal(back, pcm)


def test_odd_byte_count_is_rejected():
    with pytest.raises(AudioError, match="even number of bytes, got 3"):
        pcm16_to_float(b"\x00\x01\x02")


def test_float_to_pcm16_clips_instead_of_wrapping():
    assert float_to_pcm16(np.array([2.0, -2.0], dtype=np.float32)).tolist() == [32767, -32768]


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (48000, 16000), (22050, 16000)])
def test_resample_length_follows_rate(src, dst):
    x = np.random.default_rng(0).uniform(-0.5, 0.5, src).astype(np.float32)
    y = resample(x, src, dst)
    assert abs(len(y) - dst) <= 2
    assert y.dtype == np.float32


def test_stream_resampler_matches_one_shot_length():
    x = np.sin(np.arange(48000) / 10).astype(np.float32)
    rs = StreamResampler(48000, 16000)
    parts = [rs.push(x[i : i + 960]) for i in range(0, len(x), 960)]
    parts.append(rs.push(np.zeros(0, dtype=np.float32), last=True))
    assert abs(sum(len(p) for p in parts) - 16000) <= 2


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_read_audio_formats(tmp_path, ext):
    import soundfile as sf

    if ext.upper() not in sf.available_formats() and ext != "mp3":
        pytest.skip(f"libsndfile here cannot write {ext}")
    rate = 16000
    t = np.arange(rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / f"tone.{ext}"
    try:
        sf.write(str(path), tone, rate, format=ext.upper())
    except (sf.LibsndfileError, ValueError, TypeError):
        pytest.skip(f"libsndfile here cannot write {ext}")
    audio, got_rate = read_audio(path, target_rate=16000)
    assert got_rate == 16000
    assert abs(len(audio) - rate) < rate * 0.1
    assert 0.15 < np.sqrt(np.mean(audio**2)) < 0.3


def test_read_audio_downmixes_and_resamples(tmp_path):
    stereo = np.zeros((44100, 2), dtype=np.float32)
    stereo[:, 0] = 0.5
    path = tmp_path / "stereo.wav"
    import soundfile as sf

    sf.write(str(path), stereo, 44100)
    audio, rate = read_audio(path, target_rate=16000)
    assert rate == 16000
    assert audio.ndim == 1
    assert np.median(audio) == pytest.approx(0.25, abs=0.01)


def test_read_audio_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        read_audio(tmp_path / "nope.wav")


def test_read_audio_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x00\x00garbage that is not a wav file")
    with pytest.raises(AudioError, match=r"corrupt\.wav: cannot decode audio"):
        read_audio(path)


def test_read_audio_unsupported_type(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(AudioError, match=r"unsupported audio type '\.txt'"):
        read_audio(path)


def test_read_audio_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    write_wav(path, np.zeros(0, dtype=np.int16), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        read_audio(path)
