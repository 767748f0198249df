"""LLM access through the ``openai`` client (off unless an endpoint is configured)."""
