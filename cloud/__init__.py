"""What runs in the merchant's cloud, not on the Pi: the LINE webhook relay and the fleet side.

Imports only `membership` (binding-token routing), `offline_queue` and `base`.
"""

__all__: list[str] = []
