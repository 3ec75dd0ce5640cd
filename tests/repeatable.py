"""Settings that make the real-model tests repeatable."""

# The same text gives the same audio (Piper draws noise for each synthesis otherwise, and a
# test question was misheard once in a while), and the same prompt the same reply.
# A failure then fails every run, and can be looked into.
REPEATABLE = {"tts": {"variation": 0.0}, "llm": {"seed": 7}}
REPEATABLE_ENV = {
    f"VOXLOOP_{section.upper()}__{key.upper()}": str(value)
    for section, values in REPEATABLE.items()
    for key, value in values.items()
}
