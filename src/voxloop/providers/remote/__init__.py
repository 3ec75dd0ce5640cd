"""Speech models served by another process or host over an open protocol (Wyoming)."""
