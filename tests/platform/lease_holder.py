"""A replica that takes a cluster job's lease and dies in the middle of its round (the test
kills it with SIGKILL): ``python -m tests.platform.lease_holder URL JOB TTL``.

It prints ``running <token>`` once its round started, then its round blocks; the lease keeps
being renewed from the event loop, as a live server's is, until the process is killed.
"""

from __future__ import annotations

import asyncio
import sys
import threading

from govtrust.db import Database
from govtrust.lease import ClusterJob, ClusterJobs, Fence


def main(url: str, job: str, ttl: float) -> None:
    db = Database(url)
    forever = threading.Event()

    def round_that_never_ends(fence: Fence) -> None:
        print(f"running {fence.token}", flush=True)
        forever.wait()

    jobs = ClusterJobs(db, [ClusterJob(job, 3600.0, round_that_never_ends)], ttl_seconds=ttl)
    asyncio.run(jobs.serve(asyncio.Event(), asyncio.to_thread))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
