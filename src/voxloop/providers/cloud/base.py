"""What every remote LLM adapter shares: its model and sampling settings, the retry policy,
circuit breaker and clock, and a `generate` that retries the vendor's stream until the
first token (`resilience.py`). An adapter only builds the request and reads the stream."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import Any

from voxloop.clock import Clock, RealClock
from voxloop.config.settings import Settings, reveal
from voxloop.errors import ProviderCallError
from voxloop.providers.base import Capabilities, LLMProvider, Message, ToolCall, ToolSpec
from voxloop.providers.cloud.http import retry_after_s
from voxloop.providers.resilience import CircuitBreaker, RetryPolicy, resilient_stream


class RemoteLLM(LLMProvider):
    capabilities = Capabilities(local=False)

    def __init__(
        self,
        *,
        model: str,
        max_tokens: int = 256,
        temperature: float = 0.3,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.model, self.max_tokens, self.temperature = model, max_tokens, temperature
        self.policy = policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self.clock = clock or RealClock()

    @staticmethod
    def common_settings(settings: Settings) -> dict[str, Any]:
        """Constructor arguments every remote LLM takes from `[llm]`."""
        s = settings.llm
        return {
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "policy": RetryPolicy.for_stage(s),
        }

    @staticmethod
    def api_key(settings: Settings) -> str | None:
        return reveal(settings.llm.api_key)

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Where the calls go (for messages; never holds a secret)."""

    @abstractmethod
    def _request(
        self, messages: Sequence[Message], max_tokens: int, temperature: float
    ) -> dict[str, Any]: ...

    @abstractmethod
    def _stream(self, request: dict[str, Any]) -> AsyncIterator[str]:
        """The vendor's stream of text deltas; failures as `ProviderCallError`."""

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        return self._resilient(self._build(messages, max_tokens, temperature))

    def generate_with_tools(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str | ToolCall]:
        """Only for adapters whose capabilities say `tools` (they define `_tool`)."""
        request = self._build(messages, max_tokens, temperature)
        request["tools"] = [self._tool(t) for t in tools]
        return self._resilient(request)

    def _tool(self, tool: ToolSpec) -> dict[str, Any]:
        """The tool in the vendor's request format."""
        raise NotImplementedError(f"{self.name} cannot call tools")

    def _build(
        self, messages: Sequence[Message], max_tokens: int | None, temperature: float | None
    ) -> dict[str, Any]:
        """The vendor request, with this provider's defaults filled in."""
        return self._request(
            messages,
            max_tokens or self.max_tokens,
            self.temperature if temperature is None else temperature,
        )

    def _resilient(self, request: dict[str, Any]) -> AsyncIterator[Any]:
        """The vendor stream for `request`, retried until its first item."""
        return resilient_stream(
            lambda: self._stream(request),
            name=f"{self.name} LLM at {self.endpoint}",
            policy=self.policy,
            breaker=self.breaker,
            clock=self.clock,
        )


def sdk_error(exc: Exception, sdk: Any, where: str) -> ProviderCallError:
    """An exception from a vendor SDK (OpenAI's and Anthropic's share their error classes)
    as a `ProviderCallError` that says whether a retry makes sense."""
    if isinstance(exc, ProviderCallError):
        return exc
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        return ProviderCallError(
            f"{where} answered {status}: {exc.message}",
            retryable=status == 429 or status >= 500,
            status=status,
            retry_after_s=retry_after_s(exc.response.headers.get("retry-after")),
        )
    if isinstance(exc, sdk.APIConnectionError | sdk.APITimeoutError):
        return ProviderCallError(f"connection to {where} failed: {exc}", retryable=True)
    if isinstance(exc, sdk.APIError):  # an error event inside the stream ("overloaded")
        return ProviderCallError(f"{where}: the stream failed: {exc}", retryable=True)
    if isinstance(exc, ValueError):  # a chunk that is not JSON
        return ProviderCallError(f"{where} sent a malformed stream chunk: {exc}", retryable=False)
    # The SDK's HTTP layer lets some errors through: a connection dropped mid-stream...
    return ProviderCallError(
        f"connection to {where} failed: {type(exc).__name__}: {exc}", retryable=True
    )
