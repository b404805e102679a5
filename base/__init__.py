"""The primitives several rooms share, and nothing else.

Health levels and the board they are reported on, the one backoff policy, the rules every
config section follows, and the v1 MQTT wire contract (topics, envelope, broker settings) that
the device and the merchant's cloud both speak. Imports no other project package; `drivers`
and `offline_queue` do not import it either (they report health as their own plain data).
"""

__all__: list[str] = []
