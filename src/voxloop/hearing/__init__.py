"""Audio in: what the user said and when, before anyone decides what it means.

- `listener`: client audio → 16 kHz → VAD → speech events, with a streaming STT per utterance;
- `utterance`: one stretch of user speech (its audio, its STT, what it carries over);
- `detector`: VAD frames → speech started / paused / resumed / ended, on audio time;
- `vad`: per-frame speech probabilities → segments (for files and benchmarks);
- `echo`: whether microphone audio is the agent's own voice coming back;
- `wer`: word error rate and the text normalisation it shares with barge-in.
"""
