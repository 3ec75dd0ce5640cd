from voxloop.hearing.vad import speech_segments
from voxloop.providers.base import VADFrame

F = 0.032


def frames(pattern: str) -> list[VADFrame]:
    """'.' is silence, '#' is speech, one 32 ms frame per character."""
    return [VADFrame(i * F, F, 1.0 if c == "#" else 0.0, c == "#") for i, c in enumerate(pattern)]


def test_two_utterances_separated_by_long_silence():
    segs = speech_segments(frames("..####" + "." * 15 + "#####..."), min_silence_s=0.3)
    assert len(segs) == 2
    assert segs[0].start_s == 2 * F
    assert round(segs[0].end_s, 6) == round(6 * F, 6)
    assert round(segs[1].start_s, 6) == round(21 * F, 6)


def test_short_gap_does_not_split():
    assert len(speech_segments(frames("####...####"), min_silence_s=0.3)) == 1


def test_blips_are_dropped():
    assert speech_segments(frames("...#......."), min_speech_s=0.1) == []


def test_speech_running_to_the_end_is_closed():
    segs = speech_segments(frames("....######"))
    assert len(segs) == 1
    assert round(segs[0].end_s, 6) == round(10 * F, 6)
