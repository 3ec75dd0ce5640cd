"""JSON logs, one event per line, tagged with session and turn ids when known.

Anything passed as `extra={...}` to a logger call becomes a top-level field, so
`log.info("turn complete", extra={"session_id": sid, "turn_id": 3})` is searchable as-is.

Credentials never reach a line: whatever a logger writes (uvicorn's handshake lines with
their query strings included) passes `redact` first, which masks `?token=`-style query
values, token subprotocols and bearer credentials.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

_SECRET_PATTERNS = (
    # ?token=… &api_key=… in a URL or a query string
    re.compile(
        r"(?i)((?:^|[?&;\s])(?:token|access_token|api[_-]?key|key|secret|password|signature)=)"
        r"[^&\s\"'#;]+"
    ),
    re.compile(r"(voxloop\.token\.)[^\s,\"']+"),  # the token subprotocol
    re.compile(r"(openai-insecure-api-key\.)[^\s,\"']+"),  # OpenAI's browser key subprotocol
    re.compile(r"(?i)(\bbearer\s+)[^\s,\"']+"),
)


def redact(text: str) -> str:
    """`text` with every credential it carries masked as `***`."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


def setup_logging(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
