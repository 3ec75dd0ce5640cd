"""The native WebSocket protocol, independent of any web framework: messages, events, the outbox."""
