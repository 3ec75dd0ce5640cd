"""What the agent remembers: the turn history, the persona, and each session's stored
conversation."""
