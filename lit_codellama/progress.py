"""Progress bars: tqdm on stderr, shown only on a terminal, so that logs (CI, `> log.txt`) stay readable lines."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress_bar(*args: Any, enabled: bool = True, **kwargs: Any) -> tqdm:
    """`tqdm(...)` on stderr, disabled unless `enabled` and stderr is a terminal; nested bars leave no trace."""
    return tqdm(*args, disable=None if enabled else True, file=sys.stderr, dynamic_ncols=True, **kwargs)
