"""A future passed as an argument is a dependency: `second` waits for `first`'s result.

Prefect guide "Managing Task Dependencies", second example, with only the import changed.
"""

from procflow import flow, task


@task
def first():
    print("I'm first!")
    return 42


@task
def second(value):
    print(f"I'm second! first gave me {value}")
    return value + 1


@flow(log_prints=True)
def flow_of_tasks():
    a = first.submit()
    b = second.submit(a)
    return b


if __name__ == "__main__":
    state = flow_of_tasks()  # as in Prefect, a flow returns the States of the futures it returns
    print(state.result())
