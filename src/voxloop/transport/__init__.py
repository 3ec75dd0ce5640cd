"""Transports: the framework-free protocol module and the WebSocket endpoints."""
