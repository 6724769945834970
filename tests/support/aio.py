"""Running a coroutine from a test, whatever else the test session runs.

Playwright's sync API keeps an event loop running in the main thread once a browser test has run, and
``asyncio.run`` refuses to start inside a running loop: coroutines are run on a loop of their own in a
worker thread instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
