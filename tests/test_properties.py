"""Property tests (hypothesis) for everything that reads hostile or broken input: the
protocol parsers of every profile, the audio decoders (PCM16, μ-law, the realtime-ai
header, audio files), the sentence splitter and the config loader.

The contract throughout: any input gives a valid value or the module's own, documented
error (ProtocolError, AudioError, ConfigError, RealtimeError), never another exception.
Examples are derandomized and no database is kept, so CI sees the same examples every run;
VOXLOOP_PROPERTY_SCALE=10 multiplies the number of examples for a longer local run.
fuzz/ holds the coverage-guided counterparts (atheris); the `test_regression_*` tests
below are the crashes they found.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import os
import struct
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock
from xml.etree import ElementTree

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pydantic import BaseModel, SecretStr

from voxloop.audio.formats import SUPPORTED_FILE_TYPES, float_to_pcm16, pcm16_to_float, read_audio
from voxloop.config.settings import (
    CONFIG_ENV,
    DEFAULT_CONFIG_FILE,
    ConfigError,
    Settings,
    load_settings,
    masked_dump,
)
from voxloop.errors import AudioError
from voxloop.protocol import messages as p
from voxloop.reply.sentences import SentenceSplitter, heard_words, split_sentences
from voxloop.reply.speakable import speakable, unspeakable
from voxloop.server.transports import mulaw, twilio
from voxloop.server.transports import realtime_ai as rai
from voxloop.server.transports.realtime_events import RealtimeError
from voxloop.server.transports.realtime_session import SessionConfig, apply_session_update
from voxloop.session.session import Session

SCALE = max(1, int(os.environ.get("VOXLOOP_PROPERTY_SCALE", "1")))
BASE = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def examples(n: int) -> settings:
    return settings(BASE, max_examples=n * SCALE)


def json_values(keys: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Any]:
    """Any JSON value json.loads can return (NaN and ±Infinity included)."""
    keys = keys if keys is not None else st.text(max_size=8)
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=10,
    )


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


# -- the native protocol ---------------------------------------------------------------------

PROTOCOL_CODES = {"bad_json", "bad_message", "unknown_type", "unsupported_sample_rate"}
MESSAGES = tuple(p.MESSAGE_TYPES.values())
MESSAGE_FIELDS = sorted({f for cls in MESSAGES for f in cls.model_fields} - {"type"})
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "sample_rate": st.sampled_from(p.SUPPORTED_RATES) | st.integers(),
    "output_sample_rate": st.sampled_from(p.SUPPORTED_RATES) | st.none(),
    "content": st.text(max_size=20),
    "ms": st.floats(),
    "end_of_turn_silence_s": st.floats(0, 6),
}


@st.composite
def client_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object shaped like a client message: a known (or unknown) type, with the
    fields of any message, holding plausible or arbitrary values."""
    name_key = draw(st.sampled_from(["type", "command"]))
    out: dict[str, Any] = {name_key: draw(st.sampled_from([*p.MESSAGE_TYPES, "bogus"]))}
    for field in draw(st.lists(st.sampled_from(MESSAGE_FIELDS), max_size=4, unique=True)):
        out[field] = draw(PLAUSIBLE.get(field, st.nothing()) | json_values())
    return out


def assert_parsed_or_protocol_error(raw: str | bytes) -> p.ClientMessage | None:
    try:
        msg = p.parse_client_message(raw)
    except p.ProtocolError as exc:
        assert exc.code in PROTOCOL_CODES and exc.message
        return None
    assert isinstance(msg, MESSAGES)
    json.dumps(msg.model_dump())  # an accepted message can be echoed (a ping's `t` is)
    return msg


@examples(200)
@given(st.binary() | st.text())
def test_any_text_frame_parses_or_is_a_protocol_error(raw: str | bytes) -> None:
    assert_parsed_or_protocol_error(raw)


@examples(200)
@given(client_messages())
def test_message_fields_are_validated_into_protocol_errors(message: dict[str, Any]) -> None:
    msg = assert_parsed_or_protocol_error(json.dumps(message))
    if isinstance(msg, p.Start):
        assert msg.sample_rate in p.SUPPORTED_RATES
        assert msg.output_sample_rate in (None, *p.SUPPORTED_RATES)
    elif isinstance(msg, p.Text):
        assert 1 <= len(msg.content) <= 8000
    elif isinstance(msg, p.Playback):
        assert msg.ms >= 0  # NaN is rejected (it fails this), +inf is not
    elif isinstance(msg, p.Configure) and msg.end_of_turn_silence_s is not None:
        assert 0.1 <= msg.end_of_turn_silence_s <= 5.0


@examples(200)
@given(st.integers(0, p.MAX_FRAME_BYTES + 3), st.booleans())
def test_audio_frames_are_checked_by_size_and_state(size: int, started: bool) -> None:
    ok = started and size % 2 == 0 and size <= p.MAX_FRAME_BYTES
    try:
        p.check_audio_frame(bytes(size), started=started)
    except p.ProtocolError as exc:
        assert not ok and exc.code in {"not_started", "frame_too_large", "odd_frame_length"}
    else:
        assert ok


@pytest.mark.parametrize(
    "raw",
    [nested(100_000), nested(100_000).encode(), nested(5000, '{"a":', "}"), '{"t":' + "[" * 3000],
)
def test_regression_deeply_nested_json_is_bad_json(raw: str | bytes) -> None:
    """Found writing fuzz_protocol (now its deep-JSON mode): json.loads raised
    RecursionError, which ended the connection instead of answering with an error."""
    with pytest.raises(p.ProtocolError) as caught:
        p.parse_client_message(raw)
    assert caught.value.code == "bad_json"


# -- the realtime-ai profile -----------------------------------------------------------------

U32 = st.integers(0, 2**32 - 1)


@examples(300)
@given(U32, U32, st.binary(max_size=64))
def test_client_frame_header_and_pcm_are_split_exactly(ts: int, flags: int, pcm: bytes) -> None:
    data = struct.pack("<II", ts, flags) + pcm
    try:
        frame = rai.parse_client_frame(data)
    except p.ProtocolError as exc:
        assert exc.code == "odd_frame_length" and len(pcm) % 2
        return
    assert (frame.timestamp_ms, frame.flags, frame.pcm) == (ts, flags, pcm)
    assert frame.energy == flags & 0xFF
    assert frame.silence == bool(flags & rai.FLAG_SILENCE)
    assert frame.first == bool(flags & rai.FLAG_FIRST)


@examples(100)
@given(st.binary(max_size=7))
def test_frames_shorter_than_the_header_are_rejected(data: bytes) -> None:
    with pytest.raises(p.ProtocolError) as caught:
        rai.parse_client_frame(data)
    assert caught.value.code == "frame_too_short"


@examples(200)
@given(st.integers(), st.integers(), st.integers(), st.binary(max_size=16))
def test_server_frames_wrap_to_u32(request_id: int, seq: int, ts: int, pcm: bytes) -> None:
    frame = rai.server_frame(request_id, seq, ts, pcm)
    assert struct.unpack_from("<III", frame) == (request_id % 2**32, seq % 2**32, ts % 2**32)
    assert frame[12:] == pcm


@st.composite
def control_messages(draw: st.DrawFn) -> dict[str, Any]:
    out = draw(client_messages())
    if draw(st.booleans()):
        out["type"] = draw(st.sampled_from(rai.CONTROL_TYPES))
    return out


@examples(200)
@given(st.binary() | st.text() | control_messages().map(json.dumps))
def test_control_messages_parse_or_are_protocol_errors(raw: str | bytes) -> None:
    try:
        msg = rai.parse_control(raw)
    except p.ProtocolError as exc:
        assert exc.code in PROTOCOL_CODES and exc.message
        return
    assert isinstance(msg, rai.ClearQueues) or msg.type in rai.CONTROL_TYPES
    if isinstance(msg, p.Start):  # the profile's audio format is fixed
        assert msg.sample_rate == msg.output_sample_rate == rai.SAMPLE_RATE


def test_regression_deeply_nested_control_message_is_bad_json() -> None:
    """Found writing fuzz_realtime_ai: its own json.loads let RecursionError out."""
    with pytest.raises(p.ProtocolError) as caught:
        rai.parse_control('{"type": "text", "content": ' + nested(100_000) + "}")
    assert caught.value.code == "bad_json"
    assert isinstance(rai.parse_control('{"type": "clear_queues"}'), rai.ClearQueues)


# -- PCM16 and audio files -------------------------------------------------------------------


@examples(200)
@given(st.binary(max_size=512))
def test_pcm16_decodes_exactly_and_odd_lengths_are_audio_errors(data: bytes) -> None:
    if len(data) % 2:
        with pytest.raises(AudioError, match="even number of bytes"):
            pcm16_to_float(data)
        return
    samples = pcm16_to_float(data)
    assert samples.dtype == np.float32 and len(samples) == len(data) // 2
    assert np.all((samples >= -1.0) & (samples < 1.0))
    assert float_to_pcm16(samples).astype("<i2").tobytes() == data


@examples(300)
@given(
    hnp.arrays(
        st.sampled_from([np.float32, np.float64]),
        st.integers(0, 64),
        elements=st.floats(width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 1e30]),
    )
)
def test_float_to_pcm16_clips_and_never_wraps_or_warns(samples: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in cast"
        pcm = float_to_pcm16(samples)
    assert pcm.dtype == np.int16 and pcm.shape == samples.shape
    finite = np.isfinite(samples)
    assert np.all(pcm[np.nan_to_num(samples, nan=0.0) >= 1.0] == 32767)
    assert np.all(pcm[np.nan_to_num(samples, nan=0.0) <= -1.0] == -32768)
    assert np.all(pcm[np.isnan(samples)] == 0)
    order = np.argsort(samples[finite], kind="stable")
    assert np.all(np.diff(pcm[finite][order].astype(np.int32)) >= 0)  # monotonic: no wrap


def test_regression_nan_samples_become_silence_without_a_warning() -> None:
    """Found writing fuzz_audio: NaN cast to int16 is undefined in numpy (and warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pcm = float_to_pcm16(np.array([np.nan, 0.5, np.inf, -np.inf], dtype=np.float32))
    assert pcm.tolist() == [0, 16384, 32767, -32768]


@contextlib.contextmanager
def audio_file(data: bytes, suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(data)
        yield path


def assert_audio_or_audio_error(path: Path, target_rate: int | None) -> None:
    try:
        audio, rate = read_audio(path, target_rate=target_rate)
    except AudioError as exc:
        assert str(path) in str(exc)  # the message names the file
        return
    assert audio.dtype == np.float32 and audio.ndim == 1 and len(audio) > 0
    assert np.all(np.isfinite(audio))
    assert rate == target_rate if target_rate is not None else rate > 0


def _tone_file(fmt: str, subtype: str, channels: int = 1) -> bytes:
    tone = (0.5 * np.sin(np.arange(200) / 3)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.stack([tone] * channels, axis=1), 8000, format=fmt, subtype=subtype)
    return buf.getvalue()


VALID_FILES = {
    "wav16": (".wav", _tone_file("WAV", "PCM_16")),
    "wav_float_stereo": (".wav", _tone_file("WAV", "FLOAT", 2)),
    "flac": (".flac", _tone_file("FLAC", "PCM_16")),
    "aiff_as_wav": (".wav", _tone_file("AIFF", "PCM_16")),
}
SUFFIXES = st.sampled_from([*SUPPORTED_FILE_TYPES, ".txt", ""])
TARGET_RATES = st.sampled_from([None, 8000, 16000, 44100])


@examples(60)
@given(st.binary(max_size=256), SUFFIXES, TARGET_RATES)
def test_garbage_files_are_audio_errors(data: bytes, suffix: str, rate: int | None) -> None:
    with audio_file(data, suffix) as path:
        assert_audio_or_audio_error(path, rate)


@examples(150)
@given(
    st.sampled_from(sorted(VALID_FILES)),
    st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), min_size=1, max_size=6),
    st.integers(0, 400),
    TARGET_RATES,
)
def test_files_with_corrupt_headers_are_audio_errors(
    name: str, patches: list[tuple[int, int]], keep: int, rate: int | None
) -> None:
    """Valid files with header bytes overwritten and the tail cut: the decoder's own
    checks are what is exercised, not just "unknown format"."""
    suffix, data = VALID_FILES[name]
    corrupt = bytearray(data[: len(data) - keep])
    for offset, value in patches:
        if offset < len(corrupt):
            corrupt[offset] = value
    with audio_file(bytes(corrupt), suffix) as path:
        assert_audio_or_audio_error(path, rate)


def test_regression_header_claiming_billions_of_frames_is_not_allocated() -> None:
    """Found by fuzz_audio: sf.read allocates the frame count a (FLAC) header claims,
    so a 400-byte file asked numpy for hundreds of GiB (MemoryError)."""
    data = bytearray(VALID_FILES["flac"][1])
    assert data[:4] == b"fLaC"
    fields = int.from_bytes(data[18:26], "big")  # rate, channels, bits, 36-bit frame count
    data[18:26] = (fields | (2**36 - 1)).to_bytes(8, "big")
    with audio_file(bytes(data), ".flac") as path:
        assert_audio_or_audio_error(path, None)
    # The crash input itself: a 95-byte FLAC whose header claims 21 billion frames.
    crash = base64.b64decode(
        "ZkxhQwAAACIQABAAAAA7AAA7AQAA9PAAACj51TMAAAAA//hkCAAnFkYAABTxJ5M12rQazbUYN5aAqxBX"
        "+7LzU7KX/s/DgkPDo0KF21/pOUnZmYsUMXTwoPDofAY="
    )
    with audio_file(crash, ".flac") as path:
        assert_audio_or_audio_error(path, 16000)


def test_regression_non_finite_float_samples_are_audio_errors(tmp_path: Path) -> None:
    """Found by fuzz_audio: a float WAV holding +inf and -inf in one frame made the
    down-mix warn and return NaN; now such a file is refused by name."""
    stereo = np.array([[np.inf, -np.inf], [0.1, 0.2]], dtype=np.float32)
    path = tmp_path / "broken.wav"
    sf.write(str(path), stereo, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"broken\.wav: contains NaN or infinite samples"):
        read_audio(path)


def test_regression_too_short_to_resample_is_an_audio_error(tmp_path: Path) -> None:
    """Found by fuzz_audio: 40 samples at a header's 2.76 MHz rate resample to none at
    16 kHz; read_audio returned an empty array instead of its "no samples" error."""
    header = struct.pack(">4sIIIII", b".snd", 24, 40, 1, 2_760_512, 1)  # μ-law AU
    path = tmp_path / "fast.wav"
    path.write_bytes(header + bytes(range(0x80, 0xA8)))
    with pytest.raises(AudioError, match=r"fast\.wav: too short to resample"):
        read_audio(path, target_rate=16000)


# -- G.711 μ-law (Twilio) --------------------------------------------------------------------


def test_mulaw_reencoding_a_decoded_code_gives_it_back() -> None:
    """Exhaustive over all 256 codes; 0x7F ("negative zero") comes back as 0xFF."""
    codes = bytes(range(256))
    expected = bytes(mulaw.SILENCE if c == 0x7F else c for c in codes)
    assert mulaw.encode(mulaw.decode(codes)) == expected


def test_mulaw_round_trip_is_within_half_a_step() -> None:
    """Exhaustive over all 65536 PCM16 values: decoding an encoded sample lands within
    half its segment's quantisation step (plus what clipping at 32635 removes)."""
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    back = mulaw.decode(mulaw.encode(pcm.astype(np.int16))).astype(np.int32)
    magnitude = np.abs(pcm)
    clipped = np.minimum(magnitude, mulaw.CLIP)
    half_step = 2 ** (np.floor(np.log2(clipped + mulaw.BIAS)).astype(np.int32) - 5)
    assert np.all(np.abs(back - pcm) <= half_step + (magnitude - clipped))
    assert np.all(np.sign(back) * np.sign(pcm) >= 0)


@examples(100)
@given(st.binary(max_size=400))
def test_mulaw_decodes_any_bytes(data: bytes) -> None:
    pcm = mulaw.decode(data)
    assert pcm.dtype == np.int16 and len(pcm) == len(data)
    assert mulaw.to_pcm16(data) == pcm.astype("<i2").tobytes()
    assert np.array_equal(mulaw.decode_float(data), pcm / np.float32(32768))
    assert len(mulaw.from_pcm16(mulaw.to_pcm16(data))) == len(data)


# -- the sentence splitter and spoken text ---------------------------------------------------

PIECES = [
    "Dr.", "e.g.", "3.14", "1.", "2. ", " 3. ", "\n", " ", "  ", ". ", "...", "!?", "Hi", "J.",
    "a", "it", '"', "”", ")", ",", ";", "—", ":", "U.S.", "ok", "\t", "\u2028", "é",
]  # fmt: skip
TOKENS = st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=30)
SPOKEN_TEXT = TOKENS.map("".join)


def visible(text: str) -> str:
    return "".join(ch for ch in text if not ch.isspace())


def stream(text: str, cuts: list[int], **options: Any) -> list[str]:
    """Feed `text` in deltas cut at `cuts` (sorted, possibly repeated: empty deltas)."""
    splitter = SentenceSplitter(**options)
    out: list[str] = []
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    for start, end in itertools.pairwise(bounds):
        out += splitter.push(text[start:end])
    return out + splitter.flush()


@examples(300)
@given(SPOKEN_TEXT, st.lists(st.integers(0, 10_000), max_size=10))
def test_chunk_boundaries_do_not_change_the_sentences(text: str, cuts: list[int]) -> None:
    assert stream(text, cuts) == split_sentences(text)


@examples(500)
@given(TOKENS)
def test_token_by_token_gives_the_same_sentences_as_the_whole_text(tokens: list[str]) -> None:
    """Deltas as an LLM streams them: whole pieces such as " 3. " or "Dr.", one by one."""
    splitter = SentenceSplitter()
    out = [sentence for token in tokens for sentence in splitter.push(token)]
    assert out + splitter.flush() == split_sentences("".join(tokens))


@examples(400)
@given(SPOKEN_TEXT, st.lists(st.integers(0, 10_000), max_size=10), st.booleans(), st.integers(1, 6))
def test_sentences_are_trimmed_nonempty_and_keep_every_visible_character(
    text: str, cuts: list[int], early: bool, min_words: int
) -> None:
    sentences = stream(text, cuts, early_first_clause=early, min_clause_words=min_words)
    assert all(s and s == s.strip() for s in sentences)
    assert visible("".join(sentences)) == visible(text)


def test_regression_leading_space_in_its_own_delta_keeps_the_list_marker() -> None:
    """Found by fuzz_text: after a sentence, a delta starting with a space (" 1", as
    LLM tokens do) kept that space, so "1." no longer started the buffer and was cut
    as a sentence of its own; given whole, the same text kept "1. Go" together."""
    assert split_sentences("Hi.  1. Go") == ["Hi.", "1. Go"]
    assert stream("Hi.  1. Go", [4]) == ["Hi.", "1. Go"]
    crash = "\x00\x00\x00.  1. \x01t"  # the fuzzer's input, cut where it cut it
    assert stream(crash, [3, 5, 12]) == split_sentences(crash)


@examples(300)
@given(SPOKEN_TEXT | st.text())
def test_speakable_leaves_single_spaces_and_no_markdown(text: str) -> None:
    out = speakable(text)
    assert out == out.strip() and "  " not in out
    assert not any(ch.isspace() and ch != " " for ch in out)
    assert "*" not in out and "`" not in out
    assert unspeakable(out) == [], out


@examples(200)
@given(
    st.lists(
        st.tuples(SPOKEN_TEXT, st.floats(-1, 5), st.floats(-1, 5)),
        max_size=4,
    )
)
def test_heard_words_are_a_prefix_of_the_reply(parts: list[tuple[str, float, float]]) -> None:
    sentences = [s for s, _, _ in parts]
    words = heard_words(sentences, [h for _, h, _ in parts], [t for _, _, t in parts]).split()
    assert words == " ".join(sentences).split()[: len(words)]


# -- the config loader -----------------------------------------------------------------------

SECTIONS = {
    name: sorted(info.annotation.model_fields)
    for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
}
SECRET_ENV = [
    "VOXLOOP_REDIS_URL",
    "VOXLOOP_STT__API_KEY",
    "VOXLOOP_LLM__API_KEY",
    "VOXLOOP_TTS__API_KEY",
    "VOXLOOP_TOOLS__TAVILY_API_KEY",
    "VOXLOOP_TWILIO__AUTH_TOKEN",
]
ENV_KEYS = sorted(
    [f"VOXLOOP_{s}__{f}".upper() for s, fields in SECTIONS.items() for f in fields]
    + [f"VOXLOOP_{s}".upper() for s in SECTIONS]
    + [f"VOXLOOP_{n}".upper() for n in Settings.model_fields if n not in SECTIONS]
)
ENV_TEXT = st.text(st.characters(exclude_characters="\x00", codec="utf-8"), max_size=30)


@contextlib.contextmanager
def config_sandbox(
    toml: bytes | None = None, env: dict[str, str] | None = None, dotenv: bytes | None = None
) -> Iterator[None]:
    """A fresh working directory (voxloop.toml and .env are looked for there) and a
    VOXLOOP_* environment holding only `env`."""
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for key in [k for k in os.environ if k.startswith("VOXLOOP_")]:
            mp.delenv(key)
        if toml is not None:
            Path(DEFAULT_CONFIG_FILE).write_bytes(toml)
        if dotenv is not None:
            Path(".env").write_bytes(dotenv)
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        yield


def load_or_config_error() -> Settings | None:
    try:
        return load_settings()
    except ConfigError as exc:
        assert str(exc).startswith("invalid settings: ")
        return None


def assert_secrets_masked(settings: Settings) -> None:
    dump = masked_dump(settings)
    json.dumps(dump)

    def walk(value: Any, shown: Any) -> None:
        if isinstance(value, SecretStr):
            assert shown == ("***" if value.get_secret_value() else "")
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), shown[name])

    walk(settings, dump)


def toml_value(value: Any) -> str:
    """A rough TOML rendering; where it is wrong (a lone surrogate...), that is input too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if value is None:
        return '""'
    return json.dumps(value) if isinstance(value, str) else str(value)


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    """Known sections and fields, holding plausible or arbitrary values."""
    lines = []
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=3, unique=True)):
        lines.append(f"[{section}]")
        for field in draw(st.lists(st.sampled_from(SECTIONS[section]), max_size=4, unique=True)):
            lines.append(f"{field} = {toml_value(draw(json_values()))}")
    return "\n".join(lines)


@examples(100)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_toml_file_loads_or_is_a_config_error(content: bytes) -> None:
    with config_sandbox(toml=content):
        load_or_config_error()


@examples(80)
@given(toml_documents())
def test_toml_values_are_validated_into_config_errors(document: str) -> None:
    with config_sandbox(toml=document.encode("utf-8", "surrogatepass")):
        settings = load_or_config_error()
    if settings is not None:
        assert_secrets_masked(settings)


@examples(150)
@given(
    st.dictionaries(
        st.sampled_from(ENV_KEYS), ENV_TEXT | json_values().map(json.dumps), max_size=4
    ),
    st.binary(max_size=80) | st.none(),
)
def test_env_and_dotenv_values_load_or_are_config_errors(
    env: dict[str, str], dotenv: bytes | None
) -> None:
    with config_sandbox(env=env, dotenv=dotenv):
        settings = load_or_config_error()
    if settings is not None:
        assert_secrets_masked(settings)


@examples(60)
@given(st.dictionaries(st.sampled_from(SECRET_ENV), ENV_TEXT, min_size=1))
def test_masked_dump_never_shows_a_secret(secrets: dict[str, str]) -> None:
    marked = {key: "zq-secret-" + value for key, value in secrets.items()}  # unique marker
    with config_sandbox(env=marked):
        settings = load_settings()
    assert_secrets_masked(settings)
    assert "zq-secret-" not in json.dumps(masked_dump(settings))


@pytest.mark.parametrize(
    ("env", "toml"),
    [
        ({CONFIG_ENV: "a" * 5000}, None),  # OSError: file name too long
        ({}, b"a = " + nested(2000).encode()),  # tomllib recurses per array level
        ({"VOXLOOP_VAD": nested(5000)}, None),  # JSON in an env var
        ({"VOXLOOP_STT__FALLBACK": nested(5000)}, None),
    ],
)
def test_regression_config_parser_crashes_are_config_errors(
    env: dict[str, str], toml: bytes | None
) -> None:
    """Found writing fuzz_config: these raised OSError / RecursionError out of load_settings
    instead of the one readable ConfigError the CLI prints."""
    with config_sandbox(env=env, toml=toml), pytest.raises(ConfigError, match="invalid settings"):
        load_settings()


# -- the OpenAI Realtime profile's session.update --------------------------------------------

SESSION_KEYS = st.sampled_from(
    [
        "type", "instructions", "modalities", "output_modalities", "tools", "voice", "audio",
        "input", "output", "format", "rate", "input_audio_format", "output_audio_format",
        "turn_detection", "create_response", "idle_timeout_ms", "silence_duration_ms",
        "threshold", "interrupt_response", "transcription", "speed", "max_output_tokens",
    ]
) | st.text(max_size=6)  # fmt: skip


@examples(300)
@given(json_values(SESSION_KEYS))
def test_session_update_gives_a_config_or_a_realtime_error(update: Any) -> None:
    cfg = SessionConfig(id="sess_x", model="voxloop", instructions="be brief", voice="default")
    before = (cfg.as_json(False), cfg.as_json(True))
    try:
        new, voice = apply_session_update(cfg, update)
    except RealtimeError as exc:
        assert exc.code and exc.message
    else:
        assert voice is None or isinstance(voice, str)
        json.dumps(new.as_json(False))
        json.dumps(new.as_json(True))
    assert (cfg.as_json(False), cfg.as_json(True)) == before  # the input is never changed


@pytest.mark.parametrize("update", [{"modalities": 5}, {"output_modalities": True}])
def test_regression_non_list_modalities_is_a_realtime_error(update: dict[str, Any]) -> None:
    cfg = SessionConfig(id="sess_x", model="voxloop", instructions="", voice="default")
    with pytest.raises(RealtimeError):
        apply_session_update(cfg, update)


# -- Twilio: inbound messages and the webhook ------------------------------------------------


def _twilio_session(started: bool) -> Any:
    """A mock of just what TwilioProfile.on_text uses; every call returns at once."""
    session = mock.MagicMock(spec=Session)
    session.started, session.state, session.session_id = started, None, "s"
    return session


def _run(coro: Any) -> Any:
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("on_text waited although nothing it calls can make it wait")


TWILIO_EVENTS = st.sampled_from(["connected", "start", "media", "mark", "stop", "dtmf", "x"])


@st.composite
def twilio_calls(draw: st.DrawFn) -> list[str]:
    """A start (valid or not) and then messages of any event, with awkward fields."""
    call = twilio.TwilioCall("MZ1", "CA1")
    frames = [
        call.start(draw(st.dictionaries(st.sampled_from(["session_id", "user_id"]), ENV_TEXT)))
    ]
    for _ in range(draw(st.integers(0, 4))):
        message = draw(st.dictionaries(st.sampled_from(["media", "mark", "start"]), json_values()))
        message["event"] = draw(TWILIO_EVENTS)
        if draw(st.booleans()):
            payload = base64.b64encode(draw(st.binary(max_size=400))).decode()
            message["media"] = {
                "payload": payload,
                "track": draw(st.sampled_from(["inbound", "outbound"])),
            }
        frames.append(json.dumps(message))
    return frames


@examples(150)
@given(st.lists(st.text() | st.just(nested(5000)), max_size=3) | twilio_calls(), st.booleans())
def test_twilio_messages_are_handled_or_reported_never_raised(
    frames: list[str], started: bool
) -> None:
    profile, session = twilio.TwilioProfile(), _twilio_session(started)
    for raw in frames:
        assert _run(profile.on_text(session, raw)) == []
    for call in session.error.call_args_list:
        assert all(isinstance(a, str) and a for a in call.args[:2])


URL_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)


@examples(150)
@given(
    URL_TEXT,
    st.sampled_from(["https://", "http://", "wss://", ""]),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="[]"), max_size=20),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=80),
)
def test_twilio_signatures_verify_and_twiml_is_well_formed(
    token: str, scheme: str, host: str, body: str
) -> None:
    public = scheme + host
    params = twilio.form_params(body)
    url = twilio.webhook_url(public, "/twilio/voice", "")
    good = twilio.compute_signature(token, url, params)
    forged = ("B" if good[0] == "A" else "A") + good[1:]
    assert twilio.valid_signature(token, url, params, good)
    assert not twilio.valid_signature(token, url, params, forged)
    root = ElementTree.fromstring(twilio.twiml(twilio.media_url(public), params))
    sent = {p.get("name"): p.get("value") for p in root.iter("Parameter")}
    assert sent.get("caller", "") == twilio._XML_INVALID.sub("", params.get("From", ""))


@pytest.mark.parametrize("public", ["https://[::1", "https://ex\uff0fample.com"])
def test_regression_webhook_signature_with_a_malformed_public_url(public: str) -> None:
    url = twilio.webhook_url(public, "/twilio/voice", "")
    assert not twilio.valid_signature("token", url, {}, "c2lnbmF0dXJl")
