"""The ASGI entry point: `uvicorn --factory voxloop.app:app_from_env` (or `create_app` from
Python). A stable public name for the server's app factories, which live in
`voxloop.server.app` with the rest of the server."""

from voxloop.server.app import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]
