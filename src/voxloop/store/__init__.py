"""Where sessions live between connections. In memory for now; SQLite and Redis later."""
