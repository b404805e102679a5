"""Stand-ins for LINE Pay and the LINE Messaging API that enforce LINE's documented behaviour."""

__all__: list[str] = []
