"""Job processes in integration tests: stop one as an operator would."""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def stop(job: subprocess.Popen[Any], sig: int = signal.SIGINT) -> None:
    """Ctrl-C (or `sig`, e.g. SIGKILL), as an operator stops the job; killed if it does not end."""
    job.send_signal(sig)
    try:
        job.wait(20)
    except subprocess.TimeoutExpired:
        job.kill()
        job.wait(10)
