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


class ProviderCallError(ProviderError):
    """A call to a (remote) provider failed. `retryable`: worth trying again (429, 5xx,
    a dropped connection, a timeout); never for other 4xx answers."""

    code = "provider_call_failed"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


class CircuitOpenError(ProviderError):
    """The provider failed repeatedly; it is skipped until its cool-down ends."""

    code = "circuit_open"
