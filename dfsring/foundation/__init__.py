"""Foundations: errors, configuration, logging, metrics and bounded batching; they import nothing
above them."""
