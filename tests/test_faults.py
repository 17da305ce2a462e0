"""Faults with real processes and signals: one bad task never takes the flow down."""

from __future__ import annotations

import collections
import ctypes
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest

from procflow import flow, task
from procflow.shm import PREFIX, SHM_DIR
from procflow.ownership import current_token, owned_segments
from conftest import Terminal, ValueFlow, owner_token, values
from procflow.exceptions import RemoteError
from procflow.task_runners import ProcessPoolTaskRunner

MiB = 1 << 20


def on_processes(fn, **options):
    return ValueFlow(flow(task_runner=ProcessPoolTaskRunner(max_workers=2, **options))(fn))


def die_by_exit():
    os._exit(7)


def die_by_sigkill():
    os.kill(os.getpid(), signal.SIGKILL)


def die_by_segfault():
    ctypes.string_at(0)


@task
def steady(x):
    time.sleep(0.05)
    return x


@pytest.mark.parametrize("death, expected", [
    (die_by_exit, "exited with code 7"),
    (die_by_sigkill, "killed by signal SIGKILL (-9)"),
    (die_by_segfault, "killed by signal SIGSEGV (-11)"),
])
def test_worker_death_crashes_only_its_run_and_the_pool_is_repaired(death, expected):
    victim = task(death, name="victim")

    def body():
        steady.map(range(8))
        victim.submit()
        steady.map(range(8, 12))

    state = on_processes(body)(return_state=True)
    assert state.is_failed() and state.message == "1/13 states failed."
    flow_run = body_last_run()
    by_name = {run.name: run for run in flow_run.task_runs}
    assert by_name["victim-0"].state.is_crashed()
    assert expected in by_name["victim-0"].state.message
    assert "victim-0" in by_name["victim-0"].state.message
    steady_runs = [run for run in flow_run.task_runs if run.task_name == "steady"]
    assert len(steady_runs) == 12 and all(run.state.is_completed() for run in steady_runs)
    assert sorted(run.state.result() for run in steady_runs) == list(range(12))
    assert on_processes(lambda: steady.submit(99))() == 99, "the pool works afterwards"


def body_last_run():
    from procflow import last_flow_run

    return last_flow_run()


class Unpicklable:
    def __init__(self):
        import threading

        self.lock = threading.Lock()


class BreaksOnLoad:
    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("refusing to unpickle")


class OddError(Exception):
    def __init__(self, a, b):  # pickles, but cannot be rebuilt from args
        super().__init__(f"{a}-{b}")


@task
def take(*args, **kwargs):
    return "took"


@task
def give_unpicklable():
    return {"ok": 1, "conn": Unpicklable()}


@task
def raise_odd():
    raise OddError(1, 2)


@task
def give_breaks_on_load():
    return BreaksOnLoad()


def test_bad_arguments_results_and_exceptions_fail_only_their_run():
    def body():
        return [
            take.submit(1, {"conn": Unpicklable()}),
            take.submit(BreaksOnLoad()),
            give_unpicklable.submit(),
            raise_odd.submit(),
            take.submit(1),
        ]

    state = on_processes(body)(return_state=True)
    assert state.is_failed()
    runs = body_last_run().task_runs
    bad_arg, bad_load, bad_result, odd, fine = (run.state for run in runs)
    error = bad_arg.result(raise_on_failure=False)
    assert "take-0" in str(error) and "args[1]['conn']" in str(error) and "_thread.lock" in str(error)
    assert "could not load the arguments of task run 'take-1'" in str(bad_load.result(raise_on_failure=False))
    message = str(bad_result.result(raise_on_failure=False))
    assert "give_unpicklable-0" in message and "result['conn']" in message
    remote = odd.result(raise_on_failure=False)
    assert isinstance(remote, RemoteError) and remote.type_name == "OddError"
    assert "raise OddError" in remote.traceback_text
    assert fine.result() == "took"


def test_a_result_that_cannot_be_loaded_names_its_run_and_its_consumer_fails_alone():
    def body():
        made = give_breaks_on_load.submit()
        consumer, fine = take.submit(made), take.submit(1)
        try:
            made.result()
        except RuntimeError as error:
            consumer.wait()
            return str(error), consumer.state.name, consumer.state.message, fine.result()

    message, consumer, consumer_message, fine = on_processes(body)(return_state=True).result()
    assert message == ("could not load the result of task run 'give_breaks_on_load-0': "
                       "RuntimeError: refusing to unpickle")
    assert consumer == "Failed" and "could not load the arguments of task run 'take-0'" in consumer_message
    assert fine == "took"


def test_retries_apply_to_crashes(tmp_path):
    marker = tmp_path / "crashed-once"

    @task(retries=1)
    def crash_once(path):
        if not os.path.exists(path):
            open(path, "w").close()
            os._exit(3)
        return "second time lucky"

    assert on_processes(lambda: crash_once.submit(str(marker)))() == "second time lucky"
    assert body_last_run().task_runs[0].attempts == 2


def test_a_run_that_crashes_three_times_is_not_retried_further():
    @task(retries=10)
    def always_crash():
        os._exit(5)

    state = on_processes(lambda: always_crash.submit())(return_state=True)
    run = body_last_run().task_runs[0]
    assert run.state.is_crashed() and run.attempts == 3 and state.is_failed()


@task(timeout_seconds=0.5)
def sleeps_too_long():
    time.sleep(30)


@task(timeout_seconds=0.5)
def stuck_in_c():
    import collections
    import itertools

    collections.deque(itertools.repeat(None, 10**12), maxlen=0)  # never checks for signals


@task
def which_pid():
    return os.getpid()


@pytest.mark.parametrize("slow", [sleeps_too_long, stuck_in_c])
def test_timeouts_fail_the_run_with_timeout_error_and_replace_a_stuck_worker(slow):
    def body():
        late = slow.submit()
        others = steady.map(range(4))
        return [late, *others]  # only futures: they count

    started = time.monotonic()
    state = on_processes(body)(return_state=True)
    elapsed = time.monotonic() - started
    timed_out = body_last_run().task_runs[0]
    assert timed_out.state.name == "TimedOut" and timed_out.state.is_failed()
    assert timed_out.state.message == "Task run exceeded timeout of 0.5 second(s)"  # Prefect's words
    with pytest.raises(TimeoutError, match="timeout_seconds=0.5"):
        timed_out.state.result()
    assert all(run.state.is_completed() for run in body_last_run().task_runs[1:])
    assert state.is_failed() and elapsed < 20
    assert isinstance(on_processes(lambda: which_pid.submit())(), int), "the pool works afterwards"


@task(timeout_seconds=0.5)
def start_a_subprocess_then_get_stuck(pid_file):
    sleeper = subprocess.Popen(["sleep", "60"])
    with open(pid_file, "w") as file:
        file.write(str(sleeper.pid))
    stuck_in_c.fn()


def test_a_stuck_worker_killed_at_its_timeout_takes_the_processes_its_task_started(tmp_path):
    pid_file = tmp_path / "sleeper.pid"
    state = on_processes(lambda: start_a_subprocess_then_get_stuck.submit(str(pid_file)))(return_state=True)
    assert body_last_run().task_runs[0].state.name == "TimedOut" and state.is_failed()
    sleeper = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while psutil.pid_exists(sleeper) and psutil.Process(sleeper).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the task's subprocess outlived its killed worker"
        time.sleep(0.1)


@task
def start_a_subprocess_then_crash(pid_file):
    sleeper = subprocess.Popen(["sleep", "60"])
    with open(pid_file, "w") as file:
        file.write(str(sleeper.pid))
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_crashed_worker_takes_the_processes_its_task_started(tmp_path):
    """Issue 19: reparented to init, they would run on; a worker leads its own process group."""
    pid_file = tmp_path / "sleeper.pid"
    on_processes(lambda: start_a_subprocess_then_crash.submit(str(pid_file)))(return_state=True)
    assert body_last_run().task_runs[0].state.is_crashed()
    wait_until_gone({int(pid_file.read_text())}, "the task's subprocess outlived its crashed worker")


def test_worker_memory_is_reported_when_it_is_killed(tmp_path):
    @task
    def hog():
        block = np.ones(300 * MiB // 8)  # touch 300 MB
        time.sleep(1.5)  # let the parent sample it
        os.kill(os.getpid(), signal.SIGKILL)
        return block

    on_processes(lambda: hog.submit())(return_state=True)
    message = body_last_run().task_runs[0].state.message
    assert "killed by signal SIGKILL" in message
    rss = int(message.split("Its last RSS was ")[1].split(" MiB")[0])
    assert 250 <= rss <= 1000


def test_a_dead_workers_last_rss_is_not_overwritten_by_its_zombie():
    """Between a kill and the reaping, the dead worker reads 0 RSS; the sample it had stays."""
    from procflow.runners.crashes import WorkerWatch

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    class Board:  # the zombie, and a living worker (this process) the sampler must read
        reads = 0

        def read(self):
            Board.reads += 1
            return {zombie.pid: (1, 0.0), os.getpid(): (2, 0.0)}

    watch = WorkerWatch(Board())
    watch.last_rss[zombie.pid] = 300 * MiB
    try:
        deadline = time.monotonic() + 30
        while Board.reads < 4 or os.getpid() not in watch.last_rss:  # it sampled both, several times
            assert time.monotonic() < deadline, "the RSS sampler never ran"
            time.sleep(WorkerWatch.INTERVAL / 5)
        assert watch.last_rss[os.getpid()] > 10 * MiB  # a living worker's sample is taken
        assert watch.last_rss[zombie.pid] == 300 * MiB  # the zombie's 0 is not
    finally:
        watch.stop()
        zombie.wait()


def test_max_tasks_per_worker_recycles_workers_and_results_stay_readable():
    @task
    def produce():
        return np.full(MiB, 3.0), os.getpid()

    @task
    def consume(pair):
        return float(pair[0].sum()), os.getpid()

    def body():
        first = produce.submit()
        pids = [which_pid.submit(wait_for=[first]) for _ in range(12)]
        return consume.submit(first, wait_for=pids), pids

    (total, _), pids = on_processes(body, max_tasks_per_worker=2)()
    assert total == 3.0 * MiB
    assert len(set(pids)) > 2, f"workers were recycled: {sorted(set(pids))}"
    assert max(collections.Counter(pids).values()) <= 2, "no worker runs more than max_tasks_per_worker runs"


SCRIPT = textwrap.dedent("""
    import os, subprocess, sys, time
    import numpy as np
    from procflow import flow, task

    @task
    def hold(i, started_dir):
        data = np.ones(1 << 20)  # a shared-memory result for each run
        sleeper = subprocess.Popen(["sleep", "60"])  # a process the task started
        open(os.path.join(started_dir, f"{os.getpid()}-{i}-{sleeper.pid}"), "w").close()
        time.sleep(60)
        return data

    @task
    def produce():
        return np.ones(1 << 20)

    @flow
    def long_flow(started_dir: str):
        kept = produce.submit()
        kept.wait()
        return hold.map(range(6), started_dir)

    if __name__ == "__main__":
        long_flow(sys.argv[1])
""")


def start_long_flow(tmp_path, new_session=False, script=SCRIPT):
    """`procflow run` of a flow whose runs hold shared memory and sleep; returns once both workers run."""
    text, script = script, tmp_path / "long_flow.py"
    script.write_text(text)
    started = tmp_path / "started"
    started.mkdir()
    parent = subprocess.Popen([sys.executable, "-m", "procflow", "run", str(script), "--workers", "2", "--",
                               "--started-dir", str(started)], stderr=subprocess.PIPE, text=True,
                              start_new_session=new_session)
    deadline = time.monotonic() + 60
    while len(os.listdir(started)) < 2:  # both workers are inside a task
        assert time.monotonic() < deadline and parent.poll() is None
        time.sleep(0.05)
    workers = {int(name.split("-")[0]) for name in os.listdir(started)}
    return parent, workers


def started_subprocesses(tmp_path):
    """The pids of the `sleep` processes the long flow's running tasks started."""
    return {int(name.split("-")[2]) for name in os.listdir(tmp_path / "started")}


def wait_until_gone(pids, what):
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_cancels_pending_stops_workers_and_frees_memory(tmp_path, signum):
    parent, workers = start_long_flow(tmp_path)
    token = owner_token(parent.pid)
    children = {child.pid for child in psutil.Process(parent.pid).children(recursive=True)}
    assert workers | started_subprocesses(tmp_path) <= children
    interrupted = time.monotonic()
    parent.send_signal(signum)
    code = parent.wait(timeout=15)
    elapsed = time.monotonic() - interrupted
    stderr = parent.communicate()[1]
    assert code == 130, stderr
    assert elapsed < 5, f"took {elapsed:.1f} s to stop"
    assert "Interrupted:" in stderr and "task runs did not finish" in stderr
    assert "Cancelled" in stderr
    time.sleep(0.5)
    alive = [pid for pid in children if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left behind: {alive}"
    assert not owned_segments(token)


GENERATOR_SCRIPT = SCRIPT.replace(  # a generator flow, interrupted in its second step
    """        return hold.map(range(6), started_dir)""",
    """        futures = hold.map(range(6), started_dir)
        yield "started"
        time.sleep(60)
        yield futures""")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_a_generator_flow_in_a_step_cancels_stops_workers_and_frees_memory(tmp_path, signum):
    """`procflow run` drives the generator flow; the signal lands in its second step."""
    parent, workers = start_long_flow(tmp_path, script=GENERATOR_SCRIPT)
    token = owner_token(parent.pid)
    children = {child.pid for child in psutil.Process(parent.pid).children(recursive=True)}
    parent.send_signal(signum)
    code = parent.wait(timeout=15)
    stderr = parent.communicate()[1]
    assert code == 130, stderr
    assert "Interrupted:" in stderr and "task runs did not finish" in stderr
    wait_until_gone(children, "workers or their tasks' processes outlived the interrupted generator flow")
    assert not owned_segments(token)


GIL_SCRIPT = SCRIPT.replace(  # backtracks for ever, holding the GIL
    "time.sleep(60)", "re.match(r'(a+)+$', 'a' * 64 + 'b')").replace("import os,", "import os, re,")


def guardian_of(pid):
    from procflow.runners.guardian import NAME

    return [child for child in psutil.Process(pid).children() if NAME in child.cmdline()]


@pytest.mark.parametrize("script", [SCRIPT, GIL_SCRIPT], ids=["sleeping", "in-C-holding-the-GIL"])
def test_parent_killed_its_guardian_ends_workers_their_processes_and_segments(tmp_path, script):
    """Issue 19: a worker whose task holds the GIL cannot watch its parent; the guardian can."""
    parent, workers = start_long_flow(tmp_path, script=script)
    token = owner_token(parent.pid)
    assert owned_segments(token) and len(guardian_of(parent.pid)) == 1
    killed = time.monotonic()
    parent.kill()
    parent.wait(timeout=15)
    parent.stderr.close()
    wait_until_gone(workers | started_subprocesses(tmp_path), "workers or their tasks' processes outlived the parent")
    assert time.monotonic() - killed < 5
    deadline = time.monotonic() + 10
    while owned_segments(token):
        assert time.monotonic() < deadline, "the guardian swept the dead parent's segments"
        time.sleep(0.1)


def loky_semaphores(pid):
    return [name for name in os.listdir(SHM_DIR) if name.startswith(f"sem.loky-{pid}-")]


def test_the_whole_job_killed_its_semaphores_and_segments_go_too(tmp_path):
    """Issue 19: SIGKILL to the job's process group takes loky's resource tracker too, which
    would have removed the semaphores; the guardian (a session of its own) does it."""
    parent, workers = start_long_flow(tmp_path, new_session=True)
    token = owner_token(parent.pid)
    assert loky_semaphores(parent.pid) and owned_segments(token)
    os.killpg(parent.pid, signal.SIGKILL)
    parent.wait(timeout=15)
    parent.stderr.close()
    wait_until_gone(workers | started_subprocesses(tmp_path), "workers or their tasks' processes outlived the job")
    deadline = time.monotonic() + 10
    while loky_semaphores(parent.pid) or owned_segments(token):
        assert time.monotonic() < deadline, (loky_semaphores(parent.pid), owned_segments(token))
        time.sleep(0.1)


def test_the_next_start_sweeps_the_semaphores_a_dead_owner_noted(tmp_path):
    """With the guardian killed as well, the next start removes the semaphores by the names noted."""
    from procflow.ownership import sweep

    parent, workers = start_long_flow(tmp_path, new_session=True)
    made = set(loky_semaphores(parent.pid))
    for guardian in guardian_of(parent.pid):
        guardian.kill()
    os.killpg(parent.pid, signal.SIGKILL)
    for pid in workers:
        os.killpg(pid, signal.SIGKILL)
    parent.wait(timeout=15)
    parent.stderr.close()
    wait_until_gone(workers, "workers outlived the job")
    assert set(loky_semaphores(parent.pid)) == made, "nobody removed them yet"
    sweep()
    assert not loky_semaphores(parent.pid)


def test_parent_killed_workers_exit_and_next_start_sweeps_its_segments(tmp_path):
    """Without the guardian too (killed with the parent), the next start sweeps."""
    parent, workers = start_long_flow(tmp_path)
    token = owner_token(parent.pid)
    assert owned_segments(token), "the flow holds a shared-memory result"
    for guardian in guardian_of(parent.pid):
        guardian.kill()
    parent.kill()
    parent.wait(timeout=15)  # not communicate(): its stderr stays open in whatever outlives it
    parent.stderr.close()
    wait_until_gone(workers, "workers outlived their parent")
    wait_until_gone(started_subprocesses(tmp_path), "processes the tasks started outlived their workers")
    assert owned_segments(token), "nobody freed them yet"
    fresh = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        from procflow import flow, task
        @task
        def one():
            return 1
        @flow
        def tiny():
            return one.submit()
        print(tiny().result())
    """)], capture_output=True, text=True, timeout=120)
    assert fresh.stdout.strip() == "1"
    assert not owned_segments(token), "the next procflow start swept the dead parent's segments"
    assert not [n for n in os.listdir(SHM_DIR) if n.startswith(f"{PREFIX}{token}")], "and its lock file"


def test_soak_many_tasks_long_chain_and_diamond_on_one_worker():
    @task
    def noop(x):
        return x

    @task
    def inc(x):
        return x + 1

    @task
    def join(a, b):
        return a + b

    process = psutil.Process()

    def few():
        return noop.map(range(10_000))

    def many():
        return noop.map(range(100_000))

    on_processes(few)()  # warm up: the pool started, the modules imported
    before = process.memory_info().rss
    result = on_processes(many)()
    growth = process.memory_info().rss - before
    assert result[:3] == [0, 1, 2] and len(result) == 100_000
    assert growth < 300 * MiB, f"parent grew {growth / MiB:.0f} MiB for 100 000 runs"

    def chain():
        link = inc.submit(0)
        for _ in range(4_999):
            link = inc.submit(link)
        return link

    assert on_processes(chain)() == 5_000

    def diamond():
        top = inc.submit(0)
        return join.submit(inc.submit(top), inc.submit(top))

    assert values(flow(task_runner=ProcessPoolTaskRunner(max_workers=1))(diamond)()) == 4


@task
def link(value, path=None, fail_at=None, how="raise"):
    """One link of a chain; at `fail_at` it fails once (a marker file remembers)."""
    if value == fail_at and path and not os.path.exists(path):
        open(path, "w").close()
        if how == "crash":
            os._exit(3)
        raise RuntimeError(f"link {value} failed once")
    return value + 1


def chain_of(n, **options):
    value = link.submit(0, **options)
    for _ in range(n - 1):
        value = link.submit(value, **options)
    return value


@pytest.mark.parametrize("how", ["raise", "crash"])
def test_a_retried_link_in_the_middle_of_a_chain_lets_the_rest_run(tmp_path, how):
    """Chains travel fused in one message; the links behind a failed attempt wait for its retry."""
    retried = link.with_options(retries=1)

    def body():
        value = retried.submit(0, str(tmp_path / "marker"), 5, how)
        for _ in range(11):
            value = retried.submit(value, str(tmp_path / "marker"), 5, how)
        return value

    assert on_processes(body)() == 12
    runs = body_last_run().task_runs
    assert [run.attempts for run in runs] == [1] * 5 + [2] + [1] * 6
    assert all(run.state.is_completed() for run in runs)
    starts = [run.start_time for run in runs]
    assert starts == sorted(starts), "every link ran after the one before it"


@pytest.mark.parametrize("how", ["raise", "crash"])
def test_a_failed_link_in_the_middle_of_a_chain_stops_the_rest(tmp_path, how):
    def body():
        return chain_of(12, path=str(tmp_path / "marker"), fail_at=5, how=how)

    state = on_processes(body)(return_state=True)
    runs = body_last_run().task_runs
    assert all(run.state.is_completed() for run in runs[:5])
    assert runs[5].state.is_crashed() if how == "crash" else runs[5].state.is_failed()
    assert [run.state.name for run in runs[6:]] == ["NotReady"] * 6
    assert runs[6].state.message == "Upstream task run 'link-5' did not reach a 'COMPLETED' state."
    assert state.is_failed() and state.message == "1/1 states failed."  # the returned future counts


def test_ctrl_c_on_the_whole_process_group_cancels_and_exits_130(tmp_path):
    """A terminal's Ctrl-C reaches the whole job (workers lead groups of their own); the parent
    still cancels and exits 130."""
    parent, _ = start_long_flow(tmp_path, new_session=True)  # its own process group, as a terminal's job
    os.killpg(parent.pid, signal.SIGINT)
    assert parent.wait(timeout=15) == 130
    stderr = parent.communicate()[1]
    assert "Interrupted:" in stderr, stderr


def test_ctrl_c_pressed_again_and_again_ends_the_run_with_130(tmp_path):
    """Further Ctrl-Cs land during the cancellation, during the exit and after it."""
    from procflow.ownership import sweep

    parent, workers = start_long_flow(tmp_path)
    interrupted = time.monotonic()
    while parent.poll() is None and time.monotonic() - interrupted < 10:
        parent.send_signal(signal.SIGINT)
        time.sleep(0.005)
    code = parent.wait(timeout=15)
    elapsed = time.monotonic() - interrupted
    stderr = parent.communicate()[1]
    assert code == 130, stderr
    assert elapsed < 5, f"took {elapsed:.1f} s to stop"
    wait_until_gone(workers | started_subprocesses(tmp_path), "workers or their tasks' processes outlived the parent")
    sweep()  # what the next start does, had the second Ctrl-C ended it before it freed them


def test_ctrl_c_ends_a_thread_runner_flow_whose_tasks_are_blocked_in_c_code(interrupt_blocked_flow):
    """Threads cannot be interrupted inside `time.sleep`; the run still ends within 5 s."""
    code, elapsed, stderr, _ = interrupt_blocked_flow(["--runner", "thread"], 3)
    assert code == 130, stderr
    assert elapsed < 5, f"took {elapsed:.1f} s to stop"
    assert "Interrupted: 3 of 3 task runs did not finish" in stderr


def test_after_an_interrupted_flow_ctrl_c_interrupts_again_instead_of_killing_the_session(tmp_path):
    """A session that goes on after Ctrl-C (IPython, Jupyter) gets its own handlers back."""
    started = tmp_path / "started"
    script = tmp_path / "session.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, threading, time
        from procflow import flow, task

        @task
        def nap():
            open({str(started)!r}, "w").close()
            time.sleep(60)

        @flow
        def napping():
            nap.submit()

        def interrupt_once_started():
            while not os.path.exists({str(started)!r}):
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt_once_started, daemon=True).start()
        try:
            napping()
        except KeyboardInterrupt:
            print("flow interrupted")
        print("handlers back:", signal.getsignal(signal.SIGINT) is signal.default_int_handler,
              signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
        except KeyboardInterrupt:
            print("interrupted again")
    """))
    session = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert session.returncode == 0, session.stderr
    assert session.stdout.split("\n")[:3] == ["flow interrupted", "handlers back: True True", "interrupted again"]


def test_a_crash_is_charged_once_when_two_flows_share_the_pool():
    """Flow runs in two threads share the process pool; a crash in one leaves the other whole."""
    import threading

    @task
    def crash_now():
        os._exit(4)

    results = {}

    def run(name, body):
        results[name] = on_processes(body)(return_state=True)

    def crashing():
        steady.map(range(6))
        crash_now.submit()

    def calm():
        return steady.map(range(20))

    threads = [threading.Thread(target=run, args=("crashing", crashing)),
               threading.Thread(target=run, args=("calm", calm))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads), "a flow hung"
    assert results["calm"].is_completed() and values(results["calm"].result()) == list(range(20))
    assert results["crashing"].is_failed() and results["crashing"].message == "1/7 states failed."


@task
def steady_while_a_neighbour_dies(marker_dir: str) -> int:
    """Runs once per call: each run leaves a file named by its worker and its start time."""
    pathlib.Path(marker_dir, f"{os.getpid()}-{time.time():.6f}").touch()
    time.sleep(1.5)
    return os.getpid()


@task
def die_once_the_neighbour_runs(marker_dir: str) -> None:
    deadline = time.monotonic() + 30
    while not os.listdir(marker_dir) and time.monotonic() < deadline:
        time.sleep(0.01)
    os._exit(3)


def test_a_workers_crash_leaves_the_run_on_another_worker_alone_and_that_worker_warm(tmp_path):
    """A worker per slot: the crash breaks only the dead worker's slot. The run on the other
    worker is not lost and run again, and its worker is not replaced (with one shared pool,
    loky failed every batch in flight and started every worker again)."""
    from procflow.runners import processes

    def body():
        steady_while_a_neighbour_dies.submit(str(tmp_path))
        die_once_the_neighbour_runs.submit(str(tmp_path))

    for attempt in range(3):  # a race is tested by repeating it
        for marker in tmp_path.iterdir():
            marker.unlink()
        assert on_processes(body)(return_state=True).is_failed()
        runs_by_task = {run.task_name: run for run in body_last_run().task_runs}
        doomed = runs_by_task["die_once_the_neighbour_runs"]
        assert doomed.state.is_crashed() and "exited with code 3" in doomed.state.message
        runs = os.listdir(tmp_path)
        assert len(runs) == 1, f"attempt {attempt}: the other worker's run ran {len(runs)} times: {runs}"
        survivor = runs_by_task["steady_while_a_neighbour_dies"].state.result()
        assert str(survivor) == runs[0].split("-")[0]
        assert survivor in processes._pool[1].pids(), "the surviving worker was replaced"


def test_the_unpicklable_part_is_named_even_beside_futures_and_its_chain_is_not_ready():
    def body():
        upstream = take.submit(1)
        bad = take.submit(upstream, {"conn": Unpicklable()})
        return take.submit(bad)  # fused behind `bad`: it never runs, and says why

    on_processes(body)(return_state=True)
    _, bad, follower = body_last_run().task_runs
    error = bad.state.result(raise_on_failure=False)
    message = str(error)
    assert "args[1]['conn']" in message and "_thread.lock" in message, message
    # Issue 19: no traceback of procflow's own pickling (about 40 lines of the log) rides along.
    assert error.__traceback__ is None and error.__cause__ is None and error.__suppress_context__
    assert follower.state.name == "NotReady"
    assert follower.state.message == f"Upstream task run '{bad.name}' did not reach a 'COMPLETED' state."


@task
def big_unless_dying(die):
    if die:
        os._exit(3)
    return np.ones(1 << 21)


def test_a_worker_dying_with_a_prepared_segment_leaves_nothing_in_dev_shm():
    """After one large result, the next run's worker prepares a segment, then dies before using it."""
    def body(die):
        return big_unless_dying.submit(die).result(raise_on_failure=False)

    run = on_processes(body)
    assert float(run(False).sum()) == float(1 << 21)
    crashed = run(True)
    assert "exited with code 3" in str(crashed)
    assert not owned_segments(current_token()), "the dead worker's prepared segment was swept"
    assert float(run(False).sum()) == float(1 << 21)


def test_an_error_in_recording_an_outcome_fails_that_run_and_the_flow_goes_on(monkeypatch):
    """A bug in procflow's own bookkeeping must not leave a run unfinished and its flow waiting."""
    from procflow.lifecycle import Lifecycle

    recorded = Lifecycle.outcome
    broken_once = []

    def fails_for_the_first_outcome(self, outcome, now):
        if not broken_once:
            broken_once.append(outcome.run_id)
            raise KeyError("bookkeeping")
        return recorded(self, outcome, now)

    monkeypatch.setattr(Lifecycle, "outcome", fails_for_the_first_outcome)
    started = time.monotonic()
    state = on_processes(lambda: [which_pid.submit() for _ in range(4)])(return_state=True)
    assert time.monotonic() - started < 30
    runs = body_last_run().task_runs
    failed = [run for run in runs if run.state.is_failed()]
    assert len(failed) == 1 and all(run.state.is_completed() for run in runs if run not in failed)
    with pytest.raises(RuntimeError, match=r"procflow could not record the outcome of task run 'which_pid-\d': "
                                           r"KeyError: 'bookkeeping'"):
        failed[0].state.result()
    assert state.is_failed()


RETRY_WAIT = textwrap.dedent("""
    import os, sys, time
    from procflow import flow, task

    @task(retries=1, retry_delay_seconds=600)
    def flaky(marker):
        open(marker, "w").close()
        raise ValueError("first attempt fails")

    @flow
    def waits_to_retry(marker):
        return flaky.submit(marker)

    if __name__ == "__main__":
        started = None
        try:
            waits_to_retry(sys.argv[1])
        except KeyboardInterrupt:
            started = time.monotonic()
        run = waits_to_retry.last_run.task_runs[0]
        print(run.state.name, run.state.type.value, flush=True)
""")


def test_ctrl_c_during_a_retry_delay_cancels_that_run_at_once_in_a_session_that_goes_on(tmp_path):
    """Issue 19: the run stayed AwaitingRetry for ever (its future never resolved) and the
    interrupt always waited out the 2 s cancel timeout."""
    script, marker = tmp_path / "retry_wait.py", tmp_path / "failed-once"
    script.write_text(RETRY_WAIT)
    child = subprocess.Popen([sys.executable, str(script), str(marker)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline and child.poll() is None, "the first attempt did not run"
        time.sleep(0.05)
    time.sleep(0.5)  # into the retry delay
    interrupted = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=30)
    elapsed = time.monotonic() - interrupted
    assert out.split() == ["Cancelled", "CANCELLED"], err[-2000:]
    assert elapsed < 5, f"took {elapsed:.1f} s"


MAKING_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    from procflow import flow, task

    @task
    def big(i, started):
        open(os.path.join(started, str(i)), "w").close()
        return np.full(16 << 20, i, dtype=np.float64)  # 128 MB, written into a new segment

    @flow
    def making(started: str):
        return [big.submit(i, started) for i in range(24)]
""")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_large_results_are_being_made_leaves_no_segment(tmp_path, signum):
    """Issue 19: the segments a worker is creating or filling when the signal lands go too
    (5 of 14 runs left 128 MB each before). Repeated, at a different moment each time."""
    script = tmp_path / "making.py"
    script.write_text(MAKING_SCRIPT)
    for attempt in range(5):
        started = tmp_path / f"started-{attempt}"
        started.mkdir()
        log = tmp_path / f"stderr-{attempt}"
        with open(log, "w") as stderr:
            parent = subprocess.Popen([sys.executable, "-m", "procflow", "run", str(script), "--workers", "2",
                                       "--", "--started", str(started)], stderr=stderr)
        deadline = time.monotonic() + 60
        while len(os.listdir(started)) < 2 + attempt:
            assert time.monotonic() < deadline and parent.poll() is None, log.read_text()
            time.sleep(0.01)
        token = owner_token(parent.pid)
        time.sleep(0.013 * attempt)
        parent.send_signal(signum)
        assert parent.wait(timeout=30) == 130, log.read_text()
        assert not owned_segments(token), f"attempt {attempt}: segments left in /dev/shm"


SLOW_START_SCRIPT = textwrap.dedent("""
    import time
    from procflow import flow, task
    time.sleep(1.5)  # a slow import of the user's script

    @task
    def one():
        return 1

    @flow
    def tiny():
        return one.submit()
""")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_procflow_run_signalled_while_it_starts_exits_130_with_one_line(tmp_path, signum):
    """Issue 19: importing procflow, importing the script, then the flow starting its pool."""
    script = tmp_path / "slow_start.py"
    script.write_text(SLOW_START_SCRIPT)
    for delay in (0.3, 0.3, 0.3, 0.8, 1.6):  # 0.3 s: while procflow imports (repeated: a race)
        parent = subprocess.Popen([sys.executable, "-m", "procflow", "run", str(script)],
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        parent.send_signal(signum)
        stderr = parent.communicate(timeout=30)[1]
        assert parent.returncode == 130, (delay, stderr)
        assert "Traceback" not in stderr, (delay, stderr)
        if delay < 1.5:
            assert stderr.strip().splitlines() == [
                f"procflow: interrupted ({signal.Signals(signum).name}) before the flow started"], stderr


HUGE_MAP_SCRIPT = textwrap.dedent("""
    import os, time
    from procflow import flow, task

    @task
    def nap(i):
        time.sleep(60)

    @flow
    def huge(started: str):
        futures = nap.map(range(200_000))
        open(started, "w").close()
        return futures
""")


def test_ctrl_c_on_a_huge_map_in_a_terminal_says_it_in_a_few_lines_and_exits_at_once(tmp_path):
    """Issue 19: one ERROR line per cancelled run took 10 s for 20 000 runs in a terminal."""
    script = tmp_path / "huge.py"
    script.write_text(HUGE_MAP_SCRIPT)
    started = tmp_path / "started"
    terminal = Terminal([sys.executable, "-m", "procflow", "run", str(script), "--", "--started", str(started)])
    parent = terminal.process
    deadline = time.monotonic() + 120
    while not started.exists():
        assert time.monotonic() < deadline and parent.poll() is None, terminal.screen()
        time.sleep(0.05)
    time.sleep(0.5)
    interrupted = time.monotonic()
    parent.send_signal(signal.SIGINT)
    code = terminal.finish(timeout=60)
    elapsed = time.monotonic() - interrupted
    output = " ".join(terminal.screen().split())
    assert code == 130, output
    assert elapsed < 5, f"took {elapsed:.1f} s to exit"
    assert "199997 more task run(s) finished in state Cancelled" in output, output[-3000:]
    log = output.split("results held at peak")[0]  # the end summary lists a few of them again
    assert log.count("Finished in state Cancelled") <= 3, output[-3000:]


def _writes_fail_with_eio():
    """Worker initializer: every write of a result to /dev/shm fails as a bad disk would."""
    import errno

    from procflow.shm import SegmentWriter

    def broken(self, raws, lent):
        raise OSError(errno.EIO, "Input/output error")

    SegmentWriter.write_buffers = broken


@task
def large_or_odd(kind):
    if kind == "lock":
        import threading

        return {"fine": 1, "lock": threading.Lock()}
    if kind == "raises":
        class Refuses:
            def __reduce__(self):
                raise ValueError("no pickling for this one")

        return Refuses()
    return np.ones(1 << 20)


def test_an_error_storing_a_result_is_reported_by_its_real_cause():
    """Issue 19: each of these read 'cannot be pickled: result: pickles fine'."""
    def body():
        return [large_or_odd.submit(kind).result(raise_on_failure=False) for kind in ("array", "lock", "raises")]

    broken = flow(task_runner=ProcessPoolTaskRunner(max_workers=1, initializer=_writes_fail_with_eio))(body)
    array_error, lock_error, raising_error = broken()
    assert isinstance(array_error, OSError), array_error
    assert "could not be stored: could not write it to /dev/shm: OSError: [Errno 5] Input/output error" \
        in str(array_error)
    assert "cannot be pickled: result['lock'] (lock)" in str(lock_error)
    assert "cannot be pickled" in str(raising_error) and "no pickling for this one" in str(raising_error)
    assert "pickles fine" not in str(raising_error)
