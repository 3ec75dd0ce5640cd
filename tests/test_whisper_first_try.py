"""When a partial's decode can stand for a final's: faster-whisper's own retry rule."""

from types import SimpleNamespace

import pytest

from voxloop.providers.local.whisper_stt import _first_try_kept


@pytest.mark.parametrize(
    ("logprob", "compression", "no_speech", "kept"),
    [
        (-0.3, 1.5, 0.01, True),  # a clear sentence
        (-1.2, 1.5, 0.01, False),  # unsure words: a final retries warmer
        (-0.3, 2.6, 0.01, False),  # a loop ("1 1 1 1"): a final retries
        (-1.2, 1.5, 0.8, True),  # silence, unsure: a final keeps it too
        (-0.3, 2.6, 0.8, False),  # a confident loop is no silence
    ],
)
def test_a_partial_stands_for_a_final_only_where_a_final_keeps_its_first_try(
    logprob, compression, no_speech, kept
):
    seg = SimpleNamespace(
        avg_logprob=logprob, compression_ratio=compression, no_speech_prob=no_speech
    )
    assert _first_try_kept(seg) is kept
