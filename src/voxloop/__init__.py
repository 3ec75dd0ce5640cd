"""voxloop: a real-time voice-to-voice AI agent server, fully local by default."""

__version__ = "0.1.0"
