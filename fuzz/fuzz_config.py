"""Fuzz the config loader: `load_settings` over arbitrary `voxloop.toml` bytes, `VOXLOOP_*`
environment variables and `.env` files, then `masked_dump` of what loaded.

Contract: any content is either valid settings or one `ConfigError` whose message says what
is wrong; TOML/JSON/dotenv parser exceptions never escape. `masked_dump` shows every secret
as "***" (or "" when empty), never its value.

    python fuzz/fuzz_config.py -max_total_time=60 fuzz/seeds/config
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import _common
import atheris

# The parsers are pure Python here (unlike pydantic-core), so coverage inside them guides.
with atheris.instrument_imports(include=["voxloop", "pydantic_settings", "tomllib", "dotenv"]):
    from pydantic import BaseModel, SecretStr

    from voxloop.config.settings import (
        DEFAULT_CONFIG_FILE,
        ConfigError,
        Settings,
        load_settings,
        masked_dump,
    )

logging.getLogger("dotenv").setLevel(logging.CRITICAL)  # it warns about every bad line
SECTIONS = {
    name: sorted(info.annotation.model_fields)
    for name, info in Settings.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
}
TOP_LEVEL = sorted(name for name in Settings.model_fields if name not in SECTIONS)
KEYS = sorted({*SECTIONS, *TOP_LEVEL, *(f for fields in SECTIONS.values() for f in fields)})


def _clean_env() -> None:
    for key in [k for k in os.environ if k.startswith("VOXLOOP_")]:
        del os.environ[key]


def _set_env_lines(text: str) -> None:
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        key = key.replace("\x00", "")
        if not sep or not key:
            continue
        if not key.startswith("VOXLOOP_"):
            key = "VOXLOOP_" + key
        os.environ[key] = value.replace("\x00", "")


def _toml_value(value: Any) -> str:
    """A rough TOML rendering of a generated value; what it gets wrong is input too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    if value is None:
        return '""'
    return json.dumps(value) if isinstance(value, str) else str(value)


def _structured(fdp: atheris.FuzzedDataProvider) -> None:
    """Known sections and fields with random values, in the TOML file and the env."""
    lines: list[str] = []
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        if fdp.ConsumeBool():
            key = fdp.PickValueInList(TOP_LEVEL)
            lines.insert(0, f"{key} = {_toml_value(_common.json_value(fdp, KEYS))}")
            continue
        section = fdp.PickValueInList(sorted(SECTIONS))
        lines.append(f"[{section}]")
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            field = fdp.PickValueInList(SECTIONS[section])
            lines.append(f"{field} = {_toml_value(_common.json_value(fdp, KEYS))}")
    Path(DEFAULT_CONFIG_FILE).write_text("\n".join(lines), errors="surrogatepass")
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        section = fdp.PickValueInList(sorted(SECTIONS))
        value = _common.json_value(fdp, KEYS)
        if fdp.ConsumeBool():
            key = f"VOXLOOP_{section}__{fdp.PickValueInList(SECTIONS[section])}".upper()
            text = value if isinstance(value, str) else json.dumps(value)
        else:
            key, text = f"VOXLOOP_{section.upper()}", json.dumps(value)
        os.environ[key] = text.replace("\x00", "").encode("utf-8", "replace").decode()


def check_masked(settings: Settings) -> None:
    dump = masked_dump(settings)
    json.dumps(dump)  # plain data all the way down

    def walk(value: Any, shown: Any) -> None:
        if isinstance(value, SecretStr):
            assert shown == ("***" if value.get_secret_value() else ""), shown
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name), shown[name])

    walk(settings, dump)


def test_one_input(data: bytes) -> None:
    mode, rest = _common.split_mode(data, 4)
    _clean_env()
    cwd = os.getcwd()
    folder = tempfile.mkdtemp(prefix="voxloop-fuzz-")
    os.chdir(folder)  # voxloop.toml and .env are looked for in the working directory
    try:
        if mode == 0:
            Path(DEFAULT_CONFIG_FILE).write_bytes(rest)
        elif mode == 1:
            _set_env_lines(rest.decode("utf-8", "surrogateescape"))
        elif mode == 2:
            Path(".env").write_bytes(rest)
        else:
            _structured(atheris.FuzzedDataProvider(rest))
        try:
            settings = load_settings()
        except ConfigError as exc:
            assert str(exc), "a ConfigError must say what is wrong"
            _common.feature(_common.error_shape(str(exc)))  # pydantic-core's paths are in Rust
            return
        check_masked(settings)
    finally:
        os.chdir(cwd)
        _clean_env()
        shutil.rmtree(folder)


if __name__ == "__main__":
    _common.run(test_one_input)
