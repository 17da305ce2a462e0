"""An async flow: awaited async tasks beside CPU-bound `.map()` work on the process pool.

Reading inputs is async (here a simulated slow source with `asyncio.sleep`; in real code an
HTTP client or a database driver): the reads are gathered, so they overlap. The heavy part
is plain CPU work, mapped over the worker processes while the loop stays free.

    python examples/async_pipeline.py
"""

import asyncio
import time

from procflow import flow, task


@task
async def read_chunk(index: int) -> list[int]:
    await asyncio.sleep(0.2)  # a slow source: the reads overlap
    return list(range(index * 1000, (index + 1) * 1000))


@task
def digest(numbers: list[int]) -> int:
    """CPU-bound: runs in a worker process."""
    total = 0
    for n in numbers:
        for k in range(50):
            total = (total * 31 + n * k) % 1_000_003
    return total


@task
async def publish(digests: list[int]) -> str:
    await asyncio.sleep(0.05)
    return f"{len(digests)} digests, checksum {sum(digests) % 1_000_003}"


@flow(log_prints=True)
async def pipeline(chunks: int = 8) -> str:
    started = time.monotonic()
    data = await asyncio.gather(*(read_chunk(i) for i in range(chunks)))
    print(f"read {chunks} chunks in {time.monotonic() - started:.2f} s (one read takes 0.2 s)")
    digests = digest.map(data).result()
    return await publish(digests)


if __name__ == "__main__":
    print(asyncio.run(pipeline()))
