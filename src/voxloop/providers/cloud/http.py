"""What the streaming HTTP adapters share: raw PCM16 bytes as audio chunks, and the
numbers in a `Retry-After` header."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import numpy as np

from voxloop.providers.base import AudioChunk


async def pcm_chunks(data: AsyncIterable[bytes], rate: int) -> AsyncIterator[AudioChunk]:
    """Little-endian PCM16 as it arrives; a sample split across two reads is held back
    until its second byte comes."""
    carry = b""
    async for piece in data:
        piece = carry + piece
        whole = len(piece) - len(piece) % 2
        carry = piece[whole:]
        if whole:
            yield AudioChunk(np.frombuffer(piece[:whole], dtype="<i2").astype(np.int16), rate)


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header; an HTTP date gives None (the backoff decides)."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
