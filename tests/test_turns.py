"""The turn-state machine, frame by frame (audio time, no clock)."""

from voxloop.hearing.detector import TurnConfig, TurnDetector, TurnEventKind
from voxloop.providers.base import VADFrame

F = 0.032


def run(pattern: str, **config) -> list[tuple[int, TurnEventKind]]:
    """'#' speech, '.' silence, one 32 ms frame each → (frame index, event) pairs."""
    detector = TurnDetector(TurnConfig(**config))
    out = []
    for i, c in enumerate(pattern):
        event = detector.push(VADFrame(i * F, F, 1.0 if c == "#" else 0.0, c == "#"))
        if event is not None:
            out.append((i, event.kind))
    return out


S, P, R, E = (
    TurnEventKind.SPEECH_STARTED,
    TurnEventKind.SPEECH_PAUSED,
    TurnEventKind.SPEECH_RESUMED,
    TurnEventKind.TURN_ENDED,
)


def test_start_needs_min_speech():
    assert run("#####", min_speech_s=0.15) == [(4, S)]  # 5 frames = 160 ms
    assert run("###..........", min_speech_s=0.15) == []  # 96 ms then silence: nothing


def test_end_of_turn_after_the_silence():
    events = run("#####" + "." * 16, end_of_turn_silence_s=0.5)
    assert events == [(4, S), (20, E)]  # 16 silent frames = 512 ms


def test_pause_and_resume_are_reported_once_each():
    events = run("#####" + "." * 7 + "###" + "." * 16, pause_s=0.2, end_of_turn_silence_s=0.5)
    assert events == [(4, S), (11, P), (12, R), (21, P), (30, E)]


def test_no_pauses_when_turned_off():
    events = run("#####" + "." * 16, pause_s=0.0)
    assert [k for _, k in events] == [S, E]


def test_turn_end_carries_where_speech_stopped():
    detector = TurnDetector(TurnConfig(end_of_turn_silence_s=0.5))
    last = None
    for i, c in enumerate("..######" + "." * 20):
        last = detector.push(VADFrame(i * F, F, 1.0, c == "#")) or last
    assert last.kind is E
    assert abs(last.speech_start_s - 2 * F) < 1e-9
    assert abs(last.speech_end_s - 8 * F) < 1e-9


def test_current_speech_counts_the_utterance():
    detector = TurnDetector()
    for i in range(4):
        detector.push(VADFrame(i * F, F, 1.0, True))
    assert abs(detector.current_speech_s - 4 * F) < 1e-9
