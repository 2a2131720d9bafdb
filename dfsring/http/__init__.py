"""The HTTP edge: where requests are validated and errors become status codes."""
