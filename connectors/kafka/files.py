"""Keys of recorded metric messages (JSONL lines, unkeyed Kafka messages).

The key (instance_id) is cut out of the raw bytes with a regex rather than a full parse:
the message is parsed once, after routing, like a Kafka message with its key. The file
source itself is `connectors.kafka.replay.FileSource`.
"""

from __future__ import annotations

import re

_INSTANCE = re.compile(rb'"instance_id"\s*:\s*"((?:[^"\\]|\\.)*)"')


def instance_key(raw: bytes | None) -> bytes | None:
    """The instance_id of a JSON metric message, without parsing the whole message."""
    if not raw:
        return None
    m = _INSTANCE.search(raw)
    return m.group(1) if m else None
