"""Two independent tasks submitted at once: they run concurrently on the worker pool.

Prefect guide "Managing Task Dependencies", first example, with only the import changed.
"""

from procflow import flow, task


@task
def first():
    print("I'm first!")


@task
def second():
    print("I'm second!")


@flow(log_prints=True)
def flow_of_tasks():
    first.submit()
    second.submit()


if __name__ == "__main__":
    flow_of_tasks()
