"""Stand-ins for the LINE Messaging platform: the API server and the webhook sender (`webhooks`)."""

__all__: list[str] = []
