"""Echo verdicts from audio evidence (issue 17): speech over the agent is its echo only if
the audio it played explains most of that speech, not because the words resemble its own."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import numpy as np
import pytest

from voxloop.hearing.echo import NO_EVIDENCE, EchoGate
from voxloop.hearing.utterance import AudioQueue, Utterance
from voxloop.protocol.messages import Text
from voxloop.providers.base import Transcript
from voxloop.testing.fakes import FakeLLM, FakeSTT
from voxloop.turns.bargein import ECHO_EXPLAINED, ECHO_PRESENT

from engine_helpers import Driver, make_services, speech

RATE = 16000


def voice(seconds: float, seed: int) -> np.ndarray:
    """Speech-like: voiced pulses through two resonances, syllable by syllable, with a
    pitch that wanders, so no two stretches (or voices) are alike."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    pitch = 110 + 40 * rng.random() + 15 * np.sin(np.arange(n) / RATE * 2 * np.pi * 0.7)
    phase = np.cumsum(pitch / RATE)
    pulses = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
    pulses += 0.05 * rng.normal(size=n)
    out = np.zeros(n)
    for freq in rng.uniform(300, 900), rng.uniform(1000, 2500):
        r, w = 0.97, 2 * np.pi * freq / RATE
        y1 = y2 = 0.0
        a1, a2 = 2 * r * np.cos(w), -r * r
        res = np.empty(n)
        for i, x in enumerate(pulses):  # a two-pole resonator
            y = x + a1 * y1 + a2 * y2
            res[i], y2, y1 = y, y1, y
        out += res
    syllables = np.clip(np.sin(np.arange(n) / RATE * 2 * np.pi * rng.uniform(2.5, 4)), 0, None)
    out *= syllables
    return (0.1 * out / np.sqrt(np.mean(out**2))).astype(np.float32)


AGENT = voice(6.0, seed=1)
USER = voice(2.0, seed=2)


def _mic_echo(delay_s: float, gain: float, at_s: float, seconds: float, seed: int) -> np.ndarray:
    """What the microphone hears of the agent's audio from `at_s` on: delayed, scaled, a
    reflection, and room noise."""
    n, d = int(seconds * RATE), int(delay_s * RATE)
    start = int(at_s * RATE) - d
    echo = gain * AGENT[start : start + n].astype(np.float64)
    r = int(0.013 * RATE)  # a wall's reflection, 13 ms later
    echo[r:] += 0.3 * gain * AGENT[start : start + n - r]
    noise = np.random.default_rng(seed).normal(0, 0.002, n)
    return (echo + noise).astype(np.float32)


def _gate() -> EchoGate:
    gate = EchoGate()
    gate.add_reference(AGENT, 0.0)
    return gate


@pytest.mark.parametrize("delay_s", [0.05, 0.15, 0.4, 0.8])
@pytest.mark.parametrize("gain", [0.1, 0.3, 0.6])
def test_the_agents_own_audio_coming_back_is_echo(delay_s, gain):
    mic = _mic_echo(delay_s, gain, at_s=2.0, seconds=1.5, seed=3)
    evidence = _gate().echo_evidence(mic, 2.0)
    assert evidence.energy >= 0.9 > ECHO_EXPLAINED
    assert evidence.time >= 0.9


def test_a_voice_with_no_echo_path_is_not_echo():
    noise = np.random.default_rng(4).normal(0, 0.002, len(USER)).astype(np.float32)
    evidence = _gate().echo_evidence(USER + noise, 2.0)
    assert evidence.energy < 0.25  # the chance likeness of two voices
    assert evidence.time < 0.2 < ECHO_PRESENT  # hardly a stretch sounds like the agent


@pytest.mark.parametrize("gain", [0.1, 0.3])
def test_the_user_over_faint_echo_is_not_echo(gain):
    mic = USER + _mic_echo(0.15, gain, at_s=2.0, seconds=2.0, seed=5)
    assert _gate().echo_evidence(mic, 2.0).energy < 0.3 < ECHO_EXPLAINED


def test_an_echo_that_explains_part_of_the_speech_says_so():
    """The user over an echo as loud: the evidence is the echo's share of the energy."""
    mic = USER * 0.7 + _mic_echo(0.15, 0.6, at_s=2.0, seconds=2.0, seed=6)
    assert 0.3 < _gate().echo_evidence(mic, 2.0).energy < ECHO_EXPLAINED


def test_a_backchannel_amid_echo_leaves_most_of_the_time_to_the_echo():
    mic = _mic_echo(0.15, 0.2, at_s=2.0, seconds=2.0, seed=8)
    mic[RATE // 2 : RATE // 2 + len(USER) // 5] += USER[: len(USER) // 5]  # 0.4 s
    evidence = _gate().echo_evidence(mic, 2.0)
    assert evidence.energy < ECHO_EXPLAINED  # the backchannel is the louder
    assert evidence.time >= ECHO_PRESENT  # but the echo is there, alone, most of the time


def test_no_reference_means_no_evidence():
    assert EchoGate().echo_evidence(USER, 0.0) == NO_EVIDENCE
    # Nothing was playing then, and silence is no echo either.
    assert _gate().echo_evidence(USER, 30.0) == NO_EVIDENCE
    assert _gate().echo_evidence(np.zeros(RATE, np.float32), 2.0) == NO_EVIDENCE


def test_a_reference_too_old_to_be_kept_is_not_counted_against_the_speech():
    gate = EchoGate(keep_s=2.0)
    gate.add_reference(AGENT[: 3 * RATE], 0.0)
    gate.add_reference(AGENT[3 * RATE :], 3.0)  # the first chunk is forgotten
    mic = _mic_echo(0.2, 0.3, at_s=4.0, seconds=1.5, seed=7)
    assert gate.echo_evidence(mic, 4.0).energy >= 0.9
    old = _mic_echo(0.2, 0.3, at_s=1.0, seconds=1.0, seed=7)
    assert gate.echo_evidence(old, 1.0) == NO_EVIDENCE


def test_audio_sent_ahead_and_flushed_is_no_reference():
    """A pause flushes what the client had queued: what plays next replaces it."""
    gate = EchoGate()
    gate.add_reference(AGENT[:RATE], 0.0)  # sent ahead, due to play until 1.0 s
    resumed = AGENT[3 * RATE : 4 * RATE]
    gate.add_reference(resumed, 0.5)  # paused at 0.5 s, resumed with other audio
    noise = np.random.default_rng(9).normal(0, 0.002, int(0.4 * RATE))
    mic = (0.3 * resumed[: int(0.4 * RATE)] + noise).astype(np.float32)  # 100 ms later
    assert gate.echo_evidence(mic, 0.6).energy >= 0.9


# -- the session: "Fail again." over "Try again." ------------------------------------------

TRY_AGAIN = (
    "Try again. Breathe out, steady the racket and try again. Every miss teaches your "
    "arm something, so try again and again. Nobody gets it right the first time."
)


class Ears(FakeSTT):
    """Transcribes by what the audio holds: mostly the agent's tone (FakeTTS, 220 Hz) →
    the words it is saying; the user's (loud noise) → the `lines` entry for as much of
    it as was heard, (seconds of speech, text); quiet → nothing."""

    def __init__(self, lines: list[tuple[float, str]], agent_words: str) -> None:
        super().__init__()
        self.lines, self.agent_words = lines, agent_words

    def hear(self, x: np.ndarray) -> str:
        frames = x[: len(x) // 512 * 512].reshape(-1, 512)
        loud_s = float((np.sqrt((frames**2).mean(axis=1)) > 0.01).sum()) * 512 / RATE
        if loud_s == 0:
            return ""
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / RATE)
        if spectrum[(freqs > 200) & (freqs < 240)].sum() > 0.5 * spectrum.sum():
            return self.agent_words
        return next((text for at, text in reversed(self.lines) if loud_s >= at), "")

    async def transcribe(self, audio: AsyncIterable[np.ndarray]) -> AsyncIterator[Transcript]:
        chunks = [c async for c in audio]
        x = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        self.calls.append(len(x) / RATE)
        yield Transcript(self.hear(x), is_final=True, language="en")


class Client:
    """The client's player: plays the audio it gets in order, flushes on `tts_stop`, and
    leaks what it plays into the microphone `delay_s` later (gain 0: a headset)."""

    def __init__(self, delay_s: float, gain: float) -> None:
        self.delay, self.gain = int(delay_s * RATE), gain
        self.out = np.zeros(60 * RATE, np.float32)
        self.cursor = 0  # the sample (mic time) where the next audio will play

    def take(self, sent, now: int) -> None:
        for m in sent:
            if m.json and m.json["type"] == "tts_stop":
                self.out[now:] = 0.0  # flushed: what was queued never plays
                self.cursor = now
            elif m.audio is not None:
                pcm = np.frombuffer(m.audio, dtype="<i2").astype(np.float32) / 32768
                start = max(self.cursor, now)
                self.out[start : start + len(pcm)] = pcm
                self.cursor = start + len(pcm)

    def mic(self, start: int, n: int) -> np.ndarray:
        lo = start - self.delay
        if lo < 0:
            return np.zeros(n, np.float32)
        return self.gain * self.out[lo : lo + n]


async def _talk(d: Driver, client: Client, seconds: float, user: np.ndarray | None = None) -> None:
    """Feed the microphone in 20 ms steps: the echo (if any) plus the user's voice."""
    step = 320
    for _ in range(round(seconds * 50)):
        now = round(d.clock.now() * RATE)
        chunk = client.mic(now, step).copy()
        if user is not None and len(user):
            chunk[: len(user[:step])] += user[:step]
            user = user[step:]
        d.session.feed_audio(chunk)
        await d.clock.advance(0.02)
        client.take(await d.pump(), now + step)


async def _agent_says_try_again(
    gain: float, lines: list[tuple[float, str]]
) -> tuple[Driver, Client]:
    """The agent is a few words into TRY_AGAIN; the mic leaks its audio back at `gain`."""
    stt = Ears(lines, agent_words="try again and again")
    llm = FakeLLM([TRY_AGAIN, "Good, you noticed. What failed?"], token_s=0.01)
    d = await Driver.start(make_services(llm=llm, stt=stt))
    client = Client(delay_s=0.18, gain=gain)
    await d.session.handle(Text(content="I missed the ball"))
    await _talk(d, client, 1.5)
    assert d.session.status == "speaking"
    return d, client


async def test_fail_again_over_try_again_with_no_echo_path_is_answered():
    d, client = await _agent_says_try_again(0.0, [(0.0, "Fail again.")])
    assert d.events("tts_stop") == []
    await _talk(d, client, 2.0, user=speech(0.6, seed=11))
    assert d.events("false_interruption") == []
    assert [s["reason"] for s in d.events("tts_stop")] == ["paused", "barge_in"]
    assert [e["text"] for e in d.events("final_transcript")] == ["Fail again."]
    await _talk(d, client, 4.0)
    assert len(d.session.services.llm.requests) == 2  # the user's words got their answer
    assert d.session.state.history.turns[-1].user == "Fail again."


async def test_the_agents_own_voice_coming_back_is_still_echo():
    """A speakerphone with no echo cancellation: the microphone hears the agent, the STT
    hears its words, and the audio proves they are its own: it carries on."""
    d, client = await _agent_says_try_again(0.5, [])
    await _talk(d, client, 12.0)  # the whole reply, its echo all along
    assert [e["verdict"] for e in d.events("false_interruption")] == ["echo"]
    assert [s["reason"] for s in d.events("tts_stop")] == ["paused"]
    assert d.events("final_transcript") == []
    assert len(d.session.services.llm.requests) == 1
    turns = d.session.state.history.turns
    assert [(t.user, t.assistant, t.interrupted) for t in turns] == [
        ("I missed the ball", TRY_AGAIN, False)
    ]


async def test_a_backchannel_that_goes_on_into_words_is_answered():
    """Let go as a backchannel ("yeah"), the user goes on ("...fail again"), no echo path:
    the utterance becomes the user's turn and gets its answer."""
    lines = [(0.0, "yeah"), (0.6, "yeah, fail again")]
    d, client = await _agent_says_try_again(0.0, lines)
    # "yeah", and a breath: shorter than the silence that ends a turn.
    await _talk(d, client, 0.7, user=speech(0.3, seed=12))
    assert [e["verdict"] for e in d.events("false_interruption")] == ["backchannel"]
    await _talk(d, client, 2.0, user=speech(0.6, seed=13))  # "...fail again"
    assert [e["text"] for e in d.events("final_transcript")] == ["yeah, fail again"]
    await _talk(d, client, 4.0)
    assert len(d.session.services.llm.requests) == 2


async def test_a_dismissed_utterance_is_judged_again_at_its_end():
    """`Overlaps.is_turn`: dismissed speech whose final words are not backchannels is a
    turn unless the played audio explains it."""
    d, client = await _agent_says_try_again(0.0, [])
    overlaps = d.session.overlaps
    user = Utterance(99, AudioQueue(), None, audio=[speech(1.0, seed=14)], overlap="dismissed")
    overlaps._place(user)  # as when the agent paused for it
    assert await overlaps.is_turn(user, "Fail again.")
    assert user.overlap == "interrupt"
    await d.pump()
    assert [s["reason"] for s in d.events("tts_stop")] == ["barge_in"]

    d, client = await _agent_says_try_again(0.5, [])
    await _talk(d, client, 1.0)
    session, overlaps = d.session, d.session.overlaps
    now = round(session.clock.now() * RATE)
    echo = client.mic(now - 2 * RATE, 2 * RATE)  # what the mic heard of the agent
    echo_utt = Utterance(99, AudioQueue(), None, audio=[echo], overlap="dismissed")
    overlaps._place(echo_utt)
    assert not await overlaps.is_turn(echo_utt, "try again and again")
    assert echo_utt.overlap == "dismissed"
