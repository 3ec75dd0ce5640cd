"""What the server reports about itself: per-turn latency, the metrics registry, JSON logs."""
