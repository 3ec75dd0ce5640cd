"""Errors a user can act on. Each message names the problem and, where possible, the fix.

The CLI prints these as one line and exits non-zero; the server turns them into `error`
events. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class VoxloopError(Exception):
    """Base class for every user-facing error."""

    code = "error"


class ProviderError(VoxloopError):
    code = "provider_error"


class UnknownProviderError(ProviderError):
    code = "unknown_provider"


class MissingDependencyError(ProviderError):
    code = "missing_dependency"


class ModelFileError(ProviderError):
    """A model file is missing or corrupt; says which package to reinstall."""

    code = "model_file"


class AudioError(VoxloopError):
    code = "bad_audio"
