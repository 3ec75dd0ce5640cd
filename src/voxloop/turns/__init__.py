"""Turn-taking: VAD frames → turn detector → end-of-turn judge → overlap and barge-in verdicts.

- `detector`: silence and speech frames → started / paused / resumed / ended (audio time);
- `words`: what the words at a pause say about the end of the turn;
- `echo`: whether microphone audio is the agent's own output coming back;
- `bargein`: what speech over the agent amounts to (interrupt, backchannel, echo);
- `overlap`: the session's side of that: pause the reply, then cancel it or carry on;
- `speculation`: a reply started at a pause, held back until the turn is known to be over.
"""
