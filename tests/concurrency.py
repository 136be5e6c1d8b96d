"""Running code in many threads at once, each with its own database connection (for race tests on PostgreSQL)."""

import threading

from django.db import connection


def run_concurrently(target, count: int, *, barrier_timeout: float = 30, join_timeout: float = 120) -> list:
    """Run ``target(index)`` in ``count`` threads released together by a barrier.

    Returns each thread's result, or the exception it raised (the caller asserts on them). Every thread closes its
    own connection, so no test leaks one.
    """
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=barrier_timeout)
            results[index] = target(index)
        except Exception as exc:  # collected and asserted on by the test
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=join_timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    return results
