"""How many objects a piece of code leaves for the cyclic garbage collector.

Compiled by mypyc, a nested function that another nested function calls, or a nested function
beside a generator expression, keeps its function's variables in a reference cycle: every object
of the record it ran for then lives until the collector's next pass, which has to walk them all.
Run plain, CPython frees such objects at once. The dialects' tests assert a transform leaves
nothing behind, so both builds (`scripts/test` runs them plain and compiled) free a record's
objects as soon as it is done.
"""

from __future__ import annotations

import gc
from collections.abc import Callable


def cyclic_garbage(run: Callable[[], object], times: int = 20) -> int:
    """Objects found unreachable by a full collection after `run()` ran `times` times with the
    collector off (0: reference counting freed everything)."""
    gc.collect()
    gc.disable()
    try:
        for _ in range(times):
            run()
        return gc.collect()
    finally:
        gc.enable()
