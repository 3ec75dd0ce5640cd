"""The model host's OpenAI-compatible LLM API (server/llm_host.py): what a thin worker's
`openai` LLM provider reads, with clear errors for bad requests and a quick 503 when busy."""

from __future__ import annotations

import asyncio
import json

from fastapi.testclient import TestClient

from voxloop.providers.base import Message
from voxloop.providers.cloud.openai_llm import OpenAICompatibleLLM
from voxloop.server.app import listen
from voxloop.server.llm_host import llm_api, serve_llm
from voxloop.testing.fakes import FakeLLM


def _events(text: str) -> list[dict | str]:
    out: list[dict | str] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_a_streamed_completion_is_server_sent_events_as_openai_sends_them():
    llm = FakeLLM(["Paris is the capital."])
    with TestClient(llm_api(llm, "voxloop-test")) as client:
        answer = client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Capital of France?"}], "stream": True},
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = _events(answer.text)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events if isinstance(e, dict)]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Paris is the capital."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert llm.requests[0] == [Message("user", "Capital of France?")]


def test_a_whole_completion_and_the_model_list():
    llm = FakeLLM(["Four."])
    with TestClient(llm_api(llm, "voxloop-test")) as client:
        body = {
            "model": "anything",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Two plus two?"}]},
            ],
            "max_completion_tokens": 16,
        }
        answer = client.post("/v1/chat/completions", json=body).json()
        assert answer["choices"][0]["message"]["content"] == "Four."
        assert client.get("/v1/models").json()["data"][0]["id"] == "voxloop-test"
    assert llm.requests[0] == [Message("system", "Be brief."), Message("user", "Two plus two?")]


def test_bad_requests_are_named_and_the_api_lives_on():
    with TestClient(llm_api(FakeLLM(), "m")) as client:
        for body, says in [
            (b"{not json", "body"),
            (json.dumps({"messages": []}).encode(), "messages"),
            (json.dumps({"messages": [{"role": "wizard", "content": "x"}]}).encode(), "role"),
            (json.dumps({"messages": [{"role": "user"}], "max_tokens": 0}).encode(), "max_tokens"),
        ]:
            answer = client.post("/v1/chat/completions", content=body)
            assert answer.status_code == 400, body
            assert says in answer.json()["error"]["message"], answer.json()
        huge = b'{"messages": [{"role": "user", "content": "' + b"a" * (2 << 20) + b'"}]}'
        assert client.post("/v1/chat/completions", content=huge).status_code == 413
        ok = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
        assert ok.status_code == 200


async def test_a_worker_talks_to_it_with_its_openai_provider_and_a_busy_host_says_503():
    llm = FakeLLM(["The answer is four."], first_token_s=0.3)
    sock = listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = asyncio.create_task(serve_llm(llm_api(llm, "m", max_waiting=1), sock))
    worker = OpenAICompatibleLLM(base_url=f"http://127.0.0.1:{port}/v1", model="m")
    try:
        for _ in range(100):  # until it listens
            try:
                await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        first = asyncio.create_task(_say(worker, "What is two plus two?"))
        await asyncio.sleep(0.15)  # the first is in hand: the host takes no second
        import httpx

        async with httpx.AsyncClient() as http:
            busy = await http.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}]},
            )
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
            assert await first == "The answer is four."
            health = (await http.get(f"http://127.0.0.1:{port}/healthz")).json()
        assert health["open"] == 0  # the request in hand was counted out again
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)
        sock.close()


async def _say(llm: OpenAICompatibleLLM, question: str) -> str:
    return "".join([d async for d in llm.generate([Message("user", question)])])
