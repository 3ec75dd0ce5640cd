"""One agent reply: LLM → sentences → speakable text → TTS → paced audio, as one
cancellable unit (`pipeline.Reply`).

- `pipeline`: the reply itself, its tasks, its interruption and what was heard of it;
- `config`: what a reply is told to do (prompt, pacing, timeouts, guards);
- `sentences`: the streaming sentence splitter; `speakable`: text a voice can say;
- `spoken`: the guards on the LLM's text (length, loops, parroting);
- `safety`: fixed replies instead of harmful help; `tools`: tools the agent may call;
- `playlog`: what the listener has heard of each frame sent.
"""
