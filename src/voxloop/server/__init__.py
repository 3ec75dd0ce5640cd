"""The FastAPI server: the app, its routes, who may come in, and the limits.

- `app`: builds the app and the shared services from the settings, and runs it;
- `endpoints`, `rest`: the WebSocket routes and the REST API over the store;
- `ws`: the one WebSocket loop every wire profile shares;
- `gate`, `security`, `limits`: capacity, auth, rates and message sizes;
- `guard`: web pages may not use the server (`Host` and `Origin` on every route);
- `runtime`: process tuning (garbage collection) for a server under load;
- `transports/`: the wire profiles (native, OpenAI Realtime, Twilio).
"""
