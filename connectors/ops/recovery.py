"""Recovery on by default for tailing Kafka jobs: `python -m bytewax.run flows.alerting` resumes.

Bytewax reads `-r/-s/-b` (or `BYTEWAX_RECOVERY_DIRECTORY`, ...) before it imports the flow, so
a job started without them cannot turn recovery on in place. Instead it initialises its
default directory (`RECOVERY_DIR/{job}`) and re-executes the same command with the flags
added: one process, same pid, same arguments, plus `-r DIR -s RECOVERY_SNAPSHOT_S -b 0`.
Without recovery a restart re-read the topics from KAFKA_START and posted every past
notification again. `RECOVERY_DIR=off` opts out (with a warning); explicit flags are kept.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from connectors.config import ConfigError, Settings

log = logging.getLogger(__name__)

Exec = Callable[[str, list[str]], object]


def given_directory(argv: Sequence[str], env: Mapping[str, str]) -> Path | None:
    """The recovery directory Bytewax was started with, if any."""
    for i, arg in enumerate(argv):
        if arg in ("-r", "--recovery-directory") and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--recovery-directory="):
            return Path(arg.split("=", 1)[1])
        if arg.startswith("-r") and len(arg) > 2:
            return Path(arg[2:])
    value = env.get("BYTEWAX_RECOVERY_DIRECTORY", "").strip()
    return Path(value) if value else None


PARTITIONS = 4
"""Recovery partitions of a default directory: Bytewax suggests the most workers you expect;
processes of one cluster on one host may share the directory."""


def initialise(directory: Path, partitions: int = PARTITIONS) -> bool:
    """Create the recovery partitions if the directory has none; True if it did."""
    if any(directory.glob("part-*.sqlite3")):
        return False
    from bytewax.recovery import init_db_dir

    try:
        directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(directory, partitions)
    except OSError as exc:
        raise ConfigError([f"RECOVERY_DIR: cannot initialise {str(directory)!r}: {exc}"]) from exc
    log.info("initialised recovery directory %s (%d partitions)", directory, partitions)
    return True


def under_bytewax_run(argv: Sequence[str]) -> bool:
    """`python -m bytewax.run ...` sets argv[0] to bytewax/run.py."""
    first = Path(argv[0]) if argv else Path()
    return first.name == "run.py" and first.parent.name == "bytewax"


def ensure_recovery(
    job: str,
    settings: Settings,
    *,
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    execv: Exec = os.execv,
) -> Path | None:
    """The directory this run snapshots to; re-executes with recovery flags when they are missing.

    Only tailing Kafka jobs: the embedded sample and bounded runs (KAFKA_TAIL=false) are replays.
    """
    argv = sys.argv if argv is None else argv
    env = os.environ if env is None else env
    if settings.embedded or not settings.kafka_tail:
        return None
    given = given_directory(argv, env)
    if given is not None:
        initialise(given)
        return given
    if settings.recovery_dir is None:
        log.warning(
            "%s: RECOVERY_DIR=off: no recovery; a restart re-reads from KAFKA_START=%s and re-sends"
            " what it sends",
            job,
            settings.kafka_start,
        )
        return None
    if not under_bytewax_run(argv):
        return None  # imported by a test or a script: nothing to re-execute
    directory = settings.recovery_dir / job
    initialise(directory)
    args = [sys.executable, "-m", "bytewax.run", *argv[1:]]
    args += ["-r", str(directory), "-s", f"{settings.recovery_snapshot_s:g}", "-b", "0"]
    print(f'{{"job": "{job}", "recovery": "{directory}"}}', file=sys.stderr, flush=True)
    execv(sys.executable, args)
    return directory  # only reached when `execv` is a test double
