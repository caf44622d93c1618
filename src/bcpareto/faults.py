"""One classification of failures: a model's own (too big, diverged) stays failed; the
environment's (a full disk, a read-only or failing file system) is retried by a rerun."""

from __future__ import annotations

import errno
import re

# A trial failed by its environment, not its model (fail_reason prefix): a rerun trains it again.
ENVIRONMENT_FAULT = "environment: "
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}


def environment_fault(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is the machine's fault: a full disk or quota,
    a read-only or failing file system (TensorFlow reports a full disk as a ResourceExhaustedError
    or an internal error saying so). A model too big for memory is its own fault, not this."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
            return True
        if type(exc).__name__ in ("ResourceExhaustedError", "InternalError", "UnknownError") and re.search(
                r"No space left on device|Disk quota exceeded|Read-only file system", str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
