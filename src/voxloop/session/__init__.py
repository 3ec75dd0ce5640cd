"""One conversation per connection: the state machine between a transport and the models.

- `session`: client messages and audio in; hearing, turn-taking and replies wired together;
- `replies`: the agent's floor: which reply holds it, and starting, adopting, withdrawing,
  interrupting and finishing replies;
- `services`: what all sessions of a process share (models, store, metrics, settings).
"""
