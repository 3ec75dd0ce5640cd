"""Helpers for tests and benchmarks: scripted fake providers and virtual time."""

from voxloop.testing.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD

__all__ = ["FakeLLM", "FakeSTT", "FakeTTS", "FakeVAD"]
