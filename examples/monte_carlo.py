"""A CPU-bound batch job: price a European call option by Monte-Carlo, in chunks.

Each chunk simulates paths with numpy in a worker process; a final task combines the
chunks. The script runs the same tasks one after another in this process
(SequentialTaskRunner) and then on the process pool, and prints the speed-up.

    python examples/monte_carlo.py --chunks 8 --paths 8000000
"""

import argparse
import math
import time

import numpy as np

from procflow import flow, task
from procflow.task_runners import ProcessPoolTaskRunner, SequentialTaskRunner


@task
def simulate_chunk(seed: int, paths: int, spot: float, strike: float, rate: float, vol: float, years: float):
    rng = np.random.default_rng(seed)
    payoff_sum = 0.0
    for start in range(0, paths, 250_000):  # bounded memory per chunk
        n = min(250_000, paths - start)
        z = rng.standard_normal(n)
        final = spot * np.exp((rate - 0.5 * vol**2) * years + vol * math.sqrt(years) * z)
        payoff_sum += float(np.maximum(final - strike, 0.0).sum())
    return payoff_sum, paths


@task
def combine(chunks, rate: float, years: float):
    total = sum(payoff for payoff, _ in chunks)
    count = sum(paths for _, paths in chunks)
    return math.exp(-rate * years) * total / count


@flow
def price_option(chunks: int = 8, paths: int = 2_000_000, spot: float = 100.0, strike: float = 105.0,
                 rate: float = 0.03, vol: float = 0.2, years: float = 1.0):
    parts = simulate_chunk.map(range(chunks), paths, spot, strike, rate, vol, years)
    return combine(parts, rate, years)  # called directly: the flow returns the price itself


def black_scholes(spot=100.0, strike=105.0, rate=0.03, vol=0.2, years=1.0):
    d1 = (math.log(spot / strike) + (rate + vol**2 / 2) * years) / (vol * math.sqrt(years))
    d2 = d1 - vol * math.sqrt(years)
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    return spot * cdf(d1) - strike * math.exp(-rate * years) * cdf(d2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--paths", type=int, default=8_000_000, help="paths per chunk")
    options = parser.parse_args()

    timings = {}
    for label, runner in (("sequential", SequentialTaskRunner()), ("process pool", ProcessPoolTaskRunner())):
        priced = price_option.with_options(task_runner=runner)
        priced(chunks=1, paths=1000)  # warm up (the pool starts once, then is reused)
        start = time.perf_counter()
        price = priced(chunks=options.chunks, paths=options.paths)
        timings[label] = time.perf_counter() - start
        print(f"{label:>13}: price {price:.4f} in {timings[label]:.2f} s")
    print(f"Black-Scholes price: {black_scholes():.4f}")
    print(f"speed-up over sequential: {timings['sequential'] / timings['process pool']:.2f}x "
          f"on {ProcessPoolTaskRunner().max_workers} workers")


if __name__ == "__main__":
    main()
