"""The turn-taking heuristics: the echo gate and the unfinished-sentence check."""

import numpy as np
import pytest

from voxloop.hearing.echo import EchoGate
from voxloop.turns.words import sounds_unfinished

RATE = 16000


def voice(seconds: float, seed: int) -> np.ndarray:
    """Speech-like: noise shaped by a slow envelope, so any two stretches differ."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    envelope = 0.5 + 0.5 * np.sin(np.arange(n) / RATE * 2 * np.pi * 3)
    return (rng.normal(0, 0.2, n) * envelope).astype(np.float32)


@pytest.mark.parametrize(("delay_ms", "gain_db"), [(30, -6), (120, -12), (200, -20)])
def test_a_delayed_attenuated_copy_is_echo(delay_ms, gain_db):
    agent = voice(2.0, seed=1)
    gate = EchoGate()
    gate.add_reference(agent, 0.0)
    mic = np.zeros_like(agent)
    d = int(delay_ms / 1000 * RATE)
    mic[d:] = agent[:-d] * 10 ** (gain_db / 20)
    frames = [(mic[i : i + 512], i / RATE) for i in range(RATE // 2, RATE + RATE // 2, 512)]
    assert all(gate.is_echo(f, t) for f, t in frames)


def test_the_user_talking_over_the_echo_is_not_echo():
    agent = voice(2.0, seed=1)
    user = np.random.default_rng(2).normal(0, 0.1, 2 * RATE).astype(np.float32)
    gate = EchoGate()
    gate.add_reference(agent, 0.0)
    d = int(0.08 * RATE)
    mic = user.copy()
    mic[d:] += agent[:-d] * 10 ** (-12 / 20)
    frames = [(mic[i : i + 512], i / RATE) for i in range(RATE // 2, RATE + RATE // 2, 512)]
    assert not any(gate.is_echo(f, t) for f, t in frames)


def test_nothing_playing_means_no_echo():
    gate = EchoGate()
    gate.add_reference(voice(1.0, seed=1), 0.0)
    assert not gate.playing_near(3.0)
    assert not gate.is_echo(voice(0.032, seed=3), 3.0)


def test_old_reference_is_forgotten():
    gate = EchoGate(keep_s=2.0)
    gate.add_reference(voice(0.5, seed=1), 0.0)
    gate.add_reference(voice(0.5, seed=2), 5.0)
    assert not gate.playing_near(0.2)


@pytest.mark.parametrize(
    "text",
    [
        "I'd like to book a table for",
        "My number is five five five",
        "My number is 5 5 5",
        "Can you remind me to",
        "Um,",
        "I think, uh",
        "Well...",
        "The meeting is on",
        "I would like to order.",
        "My number is 555.",
        "I think.",
    ],
)
def test_unfinished(text):
    assert sounds_unfinished(text)


@pytest.mark.parametrize(
    "text",
    [
        "What is the capital of France?",
        "Book a table for four people.",
        "Thanks, that was helpful",
        "How many legs does a spider have?",
        "Book it for me!",
        "My number is 555-0123.",
        "Tell me a long story about a brave little dragon who learns to fly.",
        "I want to fly to Paris.",
        "My number is 555 0123",
        "",
    ],
)
def test_finished(text):
    assert not sounds_unfinished(text)


def test_end_of_turn_silence_follows_the_words():
    from voxloop.turns.words import end_of_turn_silence

    kw = {"normal": 0.5, "unfinished": 1.2, "question": 0.35, "finished": 0.4}
    assert end_of_turn_silence("I'd like a table for", **kw) == 1.2
    assert end_of_turn_silence("What is the capital of France?", **kw) == 0.35
    assert end_of_turn_silence("What?", **kw) == 0.5  # too short to be sure
    assert end_of_turn_silence("Thanks, that was helpful.", **kw) == 0.4
    assert end_of_turn_silence("Thanks, that was", **kw) == 1.2
    assert end_of_turn_silence("Okay.", **kw) == 0.5  # too short to be sure
    assert end_of_turn_silence("hmm, let me see", **kw) == 0.5  # no full stop
