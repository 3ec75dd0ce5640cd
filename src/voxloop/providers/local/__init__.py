"""The embedded models: Silero VAD, Whisper STT, llama.cpp LLM, Piper TTS."""
