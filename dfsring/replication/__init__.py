"""Replication services: coordinator, hints and handoff, transfers, ring changes, repair."""
