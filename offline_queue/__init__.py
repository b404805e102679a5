"""The durable SQLite outbox: everything that must not be lost goes through it first."""

__all__: list[str] = []
