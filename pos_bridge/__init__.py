"""The till's local HTTP API, the payment flows and the LINE Pay client."""

__all__: list[str] = []
