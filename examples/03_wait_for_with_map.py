"""No data passes between these tasks, so order them with `wait_for`; `.map()` passes
its `wait_for` to every mapped child.

Prefect guide "Managing Task Dependencies", third example, with only the import changed.
"""

from procflow import flow, task


@task
def setup():
    print("Setting up")


@task
def process(item):
    print(f"Processing {item}")
    return item * 2


@task
def cleanup():
    print("Cleaning up")


@flow(log_prints=True)
def flow_of_tasks():
    ready = setup.submit()
    processed = process.map([1, 2, 3], wait_for=[ready])
    cleanup.submit(wait_for=processed)
    return processed


if __name__ == "__main__":
    states = flow_of_tasks()  # as in Prefect, a returned .map() gives a list of States
    print([state.result() for state in states])
