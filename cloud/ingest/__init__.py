"""Fleet ingest: every device's uplink and status, from the broker into the fleet database.

`IngestWorker` (the asyncio shell), `read_message` (pure decoding), `write_batch_blocking`
(the idempotent transaction). Several workers share the load through one MQTT shared
subscription group; see docs/cloud.md.
"""

from cloud.ingest._decode import Read, read_message
from cloud.ingest._mqtt import status_filter, uplink_filter
from cloud.ingest._store import BatchOutcome, write_batch_blocking
from cloud.ingest._worker import IngestStats, IngestWorker, run_worker

__all__ = [
    "BatchOutcome",
    "IngestStats",
    "IngestWorker",
    "Read",
    "read_message",
    "run_worker",
    "status_filter",
    "uplink_filter",
    "write_batch_blocking",
]
