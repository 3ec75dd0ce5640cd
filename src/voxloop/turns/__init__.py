"""Turn-taking: who has the floor. When the user has finished, what speech over the agent
means, and what the session does about it.

- `words`: what the words at a pause say about the end of the turn;
- `endpoint`: the end-of-turn policy (silence, words, the learned judge) and its evidence;
- `bargein`: what speech over the agent amounts to (interrupt, backchannel, echo);
- `overlap`: the session's side of that: pause the reply, then cancel it or carry on;
- `speculation`: a reply started at a pause, held back until the turn is known to be over;
- `transcripts`: the end of a turn → its final words, within the STT's time limit;
- `continuation`: speech before the reply was heard continues the turn;
- `floor`: what these helpers may see and do of the session (`Floor`, `Plumbing`).
"""
