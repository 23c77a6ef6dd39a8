"""The bounded job queue: a fixed number of worker threads and a fixed number of places.

A request takes a place when it is admitted (before its upload is read) and gives it back when its job has
ended, so uploads in progress, queued jobs and running jobs together never exceed ``workers + max_queue``;
the next request is refused (429) without reading its body. A request that timed out keeps its place until
its job really ends (a running prediction cannot be interrupted; a queued one is cancelled).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["JobQueue"]


class JobQueue:
    """``admit()`` a request, ``submit()`` its job (the place is released when the job ends), or ``release()``."""

    def __init__(self, workers: int, max_queue: int) -> None:
        self.workers, self.capacity = workers, workers + max_queue
        self._taken = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medseg-job")

    @property
    def taken(self) -> int:
        with self._lock:
            return self._taken

    def admit(self) -> bool:
        """Take a place; ``False`` when every place is taken (the caller answers 429)."""
        with self._lock:
            if self._taken >= self.capacity:
                return False
            self._taken += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._taken -= 1

    def submit(self, job: Callable[[], Any], on_end: Callable[[], None]) -> Future[Any]:
        """Run ``job`` on a worker; when it ends (or is cancelled) ``on_end`` runs and the place is released."""

        def done(_: Future[Any]) -> None:
            try:
                on_end()
            finally:
                self.release()

        future = self._pool.submit(job)
        future.add_done_callback(done)
        return future

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
