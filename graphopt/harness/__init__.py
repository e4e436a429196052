"""Orchestration above core, passes and backends: benchmark runs, debugging, reports."""
