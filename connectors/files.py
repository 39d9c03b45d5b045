"""File inputs: metric messages recorded one JSON object per line (JSONL).

Items are `KafkaSourceMessage`s, exactly what the Kafka source yields, so the alerting
logic downstream cannot tell a replayed file from a topic. The key (instance_id) is cut
out of the raw line with a regex rather than a full parse: the message is parsed once,
after routing, like a Kafka message with its key.
"""

from __future__ import annotations

import re
from pathlib import Path

from bytewax.connectors.kafka import KafkaSourceMessage
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.errors import ConnectorError

_INSTANCE = re.compile(rb'"instance_id"\s*:\s*"((?:[^"\\]|\\.)*)"')


def instance_key(raw: bytes | None) -> bytes | None:
    """The instance_id of a JSON metric message, without parsing the whole message."""
    if not raw:
        return None
    m = _INSTANCE.search(raw)
    return m.group(1) if m else None


class _JsonlPartition(StatefulSourcePartition[KafkaSourceMessage, int]):
    def __init__(self, path: Path, resume_at: int | None, batch_size: int) -> None:
        self._f = path.open("rb")
        self._topic = f"file:{path.name}"
        self._offset = resume_at or 0
        self._f.seek(self._offset)
        self._batch = batch_size

    def next_batch(self) -> list[KafkaSourceMessage]:
        out = []
        eof = False
        for _ in range(self._batch):
            start = self._offset
            line = self._f.readline()
            if not line:
                eof = True
                break
            self._offset += len(line)
            line = line.strip()
            if not line:
                continue
            out.append(
                KafkaSourceMessage(
                    key=instance_key(line), value=line, topic=self._topic, partition=0, offset=start
                )
            )
        if eof and not out:
            raise StopIteration()
        return out

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._f.close()


class JsonlSource(FixedPartitionedSource[KafkaSourceMessage, int]):
    """One partition per file; resumes at the byte offset of the last snapshot."""

    def __init__(self, paths: list[Path], batch_size: int = 1000) -> None:
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ConnectorError(f"input file(s) not found: {', '.join(missing)}")
        self._paths = {str(p): p for p in paths}
        self._batch = batch_size

    def list_parts(self) -> list[str]:
        return list(self._paths)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _JsonlPartition:
        return _JsonlPartition(self._paths[for_part], resume_state, self._batch)
