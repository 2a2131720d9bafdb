"""dfsring: a leaderless, self-healing, replicated key/value and file store (Dynamo-style)."""

__version__ = "0.1.0"
