"""The FastAPI application: HTTP endpoints and the WebSocket transport.

`create_app(settings)` builds everything, so each test gets its own app and its own
providers. Models load (and warm up) once at start-up and are shared by every session.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from voxloop import __version__
from voxloop.clock import Clock, RealClock
from voxloop.config.settings import Settings, reveal
from voxloop.errors import VoxloopError
from voxloop.memory.persona import default_system_prompt
from voxloop.providers.local.llm_probe import Probe, probe_configured
from voxloop.providers.registry import ProviderPool, Registry
from voxloop.reply.tools import ToolBox, default_toolbox
from voxloop.server import endpoints, rest, runtime
from voxloop.server.endpoints import require_api_key
from voxloop.server.gate import Gate
from voxloop.server.guard import SiteGuard, SitePolicy
from voxloop.server.security import TokenLedger
from voxloop.session.services import Services
from voxloop.store.base import ResponseQueue, SessionStore
from voxloop.telemetry.logs import setup_logging

log = logging.getLogger("voxloop")

WEB_DIR = Path(__file__).parent / "web"


class _AppFiles(StaticFiles):
    """The browser app's files, revalidated on every load: its ES modules must never mix
    versions from before and after an upgrade."""

    def file_response(self, *args, **kwargs) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def build_store(settings: Settings) -> tuple[SessionStore, ResponseQueue | None, bool]:
    """The conversation store the settings ask for, its event queue (Redis mode only), and
    whether other processes may share it (then sessions re-read their context)."""
    if settings.redis_url is not None:
        from voxloop.store.redis import RedisResponseQueue, RedisStore

        url, ttl = settings.redis_url.get_secret_value(), settings.store.session_ttl_s
        return RedisStore(url, ttl_s=ttl), RedisResponseQueue(url, ttl_s=ttl), True
    if settings.store.backend == "memory":
        from voxloop.store.memory import MemoryStore

        return MemoryStore(), None, False
    from voxloop.store.sqlite import SQLiteStore

    return SQLiteStore(settings.resolved_store_path()), None, True


def _token_ledger(settings: Settings) -> TokenLedger | None:
    """Workers on one Redis share their spent session tokens; otherwise each process
    keeps its own (`Gate`'s default)."""
    if settings.redis_url is None:
        return None
    from voxloop.store.redis import RedisTokenLedger

    return RedisTokenLedger(settings.redis_url.get_secret_value())


def build_services(
    settings: Settings, registry: Registry | None = None, clock: Clock | None = None
) -> Services:
    store, events, shared = build_store(settings)
    pool = ProviderPool(settings, registry)
    return Services(
        settings=settings,
        vad=pool.get("vad"),  # type: ignore[arg-type]
        stt=pool.get("stt"),  # type: ignore[arg-type]
        llm=pool.get("llm"),  # type: ignore[arg-type]
        tts=pool.get("tts"),  # type: ignore[arg-type]
        clock=clock or RealClock(),
        pool=pool,
        store=store,
        shared_store=shared,
        events=events,
        tools=_toolbox(settings),
    )


def _toolbox(settings: Settings) -> ToolBox | None:
    t = settings.tools
    if not t.enabled:
        return None
    return default_toolbox(tavily_api_key=reveal(t.tavily_api_key), tavily_url=t.tavily_url)


async def _retention(services: Services) -> None:
    """Delete conversations older than the retention setting, now and then every hour."""
    days = services.settings.store.retention_days
    if days <= 0:
        return
    while True:
        try:
            purged = await services.store.purge(time.time() - days * 86400)
            if purged:
                log.info("retention: deleted old conversations", extra={"count": purged})
        except Exception as exc:
            log.warning("retention purge failed: %r", exc)
        await asyncio.sleep(3600)


def _hand_over_across_workers(svc: Services) -> list[asyncio.Task]:
    """Redis mode: workers hand live sessions over to each other (store/redis_handover.py);
    the task that answers the other workers' claims."""
    if svc.settings.redis_url is None or svc.handover is not None:
        return []
    from voxloop.store.redis_handover import RedisHandOver

    bus = RedisHandOver(svc.settings.redis_url.get_secret_value())
    svc.handover = bus

    async def let_go(session_id: str) -> None:
        for live in list(svc.live_sessions):
            if live.session_id == session_id:
                await live.hand_over()

    return [asyncio.create_task(bus.serve(let_go), name="hand-over")]


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    services: Services | None = None,
    warmup: bool = True,
    tune_gc: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> FastAPI:
    """`tune_gc`: freeze the process's heap once warm (runtime.py); only for a process
    that is the server, never for one that builds apps in passing (tests). `on_ready`
    runs once the models are loaded and warm."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        svc = services or build_services(settings, registry)
        svc.metrics.prometheus.track_sessions(lambda: len(svc.live_sessions))
        app.state.services = svc
        if warmup:
            # The judge loads here, not in build_services: a real start loads every model
            # (a missing one fails it), while apps built for tests need no judge's weights.
            judge = svc.turn_judge
            svc.llm.expect_system_prompt(default_system_prompt(svc.settings))
            for provider in (svc.vad, svc.stt, svc.llm, svc.tts, *([judge] if judge else [])):
                await provider.warmup()
            if settings.limits.conversations == "auto":
                gate.capacity = await svc.llm.conversations()
                log.info("capacity: %s conversations at once", gate.capacity or "unbounded")
        if tune_gc:
            runtime.tune_gc()
        retention = asyncio.create_task(_retention(svc), name="retention")
        lag = asyncio.create_task(svc.metrics.prometheus.probe_loop_lag(), name="loop-lag")
        given_handover = svc.handover
        background = [retention, lag, *_hand_over_across_workers(svc)]
        app.state.ready = True
        log.info("voxloop ready", extra={"version": __version__})
        if on_ready is not None:
            on_ready()
        yield
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if svc.handover is not given_handover:  # ours: made above
            await svc.handover.close()  # type: ignore[union-attr]
            svc.handover = None
        ledger_close = getattr(app.state.gate.ledger, "close", None)
        if ledger_close is not None:
            await ledger_close()
        if services is None:
            await svc.store.close()
            if svc.events is not None:
                await svc.events.close()
            if svc.pool is not None:
                svc.pool.close()

    gate = Gate(settings, ledger=_token_ledger(settings))  # capacity, rates, credentials
    # With auth on, the API's description is the operators' (an API key), not the world's.
    hidden = {"docs_url": None, "redoc_url": None, "openapi_url": None}
    app = FastAPI(
        title="voxloop",
        version=__version__,
        lifespan=lifespan,
        **(hidden if gate.auth.enabled else {}),
    )
    # Web pages the user visits may not use this server (DNS rebinding, cross-site sockets).
    site = SitePolicy(
        bind_host=settings.server.host,
        allowed_hosts=settings.server.allowed_hosts,
        origins=settings.auth.origins,
    )
    app.add_middleware(SiteGuard, policy=site)
    app.state.settings = settings
    app.state.gate = gate
    app.state.ready = False

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """The models are loaded and warmed up."""
        if not app.state.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        live = app.state.services.conversations()
        cap = min(gate.capacity or settings.limits.max_sessions, settings.limits.max_sessions)
        return JSONResponse({"status": "ready", "conversations": live, "capacity": cap})

    if gate.auth.enabled:

        @app.get("/openapi.json", dependencies=[Depends(require_api_key)], include_in_schema=False)
        async def openapi() -> JSONResponse:
            """The API's OpenAPI description, for holders of an API key."""
            return JSONResponse(app.openapi())

    @app.get("/metrics", dependencies=[Depends(require_api_key)])
    async def metrics() -> Response:
        svc: Services = app.state.services
        return Response(
            svc.metrics.prometheus.render(),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    @app.get("/api/metrics/summary", dependencies=[Depends(require_api_key)])
    async def metrics_summary() -> JSONResponse:
        svc: Services = app.state.services
        return JSONResponse(
            {
                "sessions": len(svc.live_sessions),
                "counts": svc.metrics.counts,
                "stages": svc.metrics.summary(),
            }
        )

    app.include_router(rest.router, dependencies=[Depends(require_api_key)])
    app.include_router(endpoints.router)

    # The browser app: static files, no build step. Mounted last so the routes above win.
    app.mount("/", _AppFiles(directory=WEB_DIR, html=True), name="web")
    return app


def app_from_env() -> FastAPI:
    """For `uvicorn --factory voxloop.server.app:app_from_env --workers N`: each worker process
    builds its app from the environment and config file, as `voxloop serve` does."""
    from voxloop.config.settings import load_settings

    settings = load_settings()
    setup_logging(settings.log_level)
    return create_app(settings, tune_gc=settings.server.gc_tuning)


def run_server(settings: Settings, probe: Probe = probe_configured) -> None:
    """Serve until stopped. The port is taken first and the LLM smoke-tested in a child
    process (`probe`), so a busy port or an engine that crashes this CPU is one line in
    seconds, not a traceback or a silent "Segmentation fault" after the models load."""
    import uvicorn

    setup_logging(settings.log_level)
    sock = listen(settings.server.host, settings.server.port)
    if settings.server.llm_check:
        try:
            outcome = probe(settings)
        except VoxloopError:
            sock.close()
            raise
        if outcome is not None and not outcome.ok:
            sock.close()
            raise VoxloopError(f"the LLM failed its start-up check: {outcome.message}")
    url = _browser_url(settings.server.host, sock.getsockname()[1])
    app = create_app(
        settings,
        tune_gc=settings.server.gc_tuning,
        on_ready=lambda: print(f"voxloop is ready: open {url}", file=sys.stderr, flush=True),
    )
    config = uvicorn.Config(
        app,
        log_config=None,
        # Over the frame limit, so that we can answer politely up to there.
        ws_max_size=max(4 << 20, 2 * settings.limits.max_frame_bytes),
        ws_ping_interval=settings.limits.heartbeat_s,  # dead peers are dropped
        # PCM hardly compresses: deflate would only burn CPU on every audio frame.
        ws_per_message_deflate=False,
        ws_ping_timeout=settings.limits.heartbeat_s,
    )
    uvicorn.Server(config).run(sockets=[sock])


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a `VoxloopError` that says why not. IPv4 unless
    the host is an IPv6 address, as uvicorn itself binds ("localhost" stays 127.0.0.1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise VoxloopError(
                f"port {port} on {host} is already in use (is another voxloop running?); "
                "stop that process or choose another port with --port"
            ) from None
        reason = exc.strerror or str(exc)
        raise VoxloopError(f"cannot listen on {host}:{port}: {reason}") from None
    sock.set_inheritable(True)
    return sock


def _browser_url(host: str, port: int) -> str:
    """Where a person on this machine opens the app (a wildcard bind is reached locally)."""
    local = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}
    shown = local.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}"
