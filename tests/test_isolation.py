"""Issue 15: many flows, many users, one machine: nothing shared by accident.

Flow runs at once in threads of one process each get their own data; names in /dev/shm
and TMPDIR are unguessable and created exclusively, 0600/0700; the sweep of dead owners
removes only the running user's own entries, survives odd names and holds across PID
namespaces; another local user (a real second uid, in a private mount namespace with its
own /dev/shm and TMPDIR) can read nothing, plant nothing that procflow uses, and stop
nothing from starting.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from procflow import flow, task
from procflow import ownership
from procflow.ownership import SHM_DIR, current_token, owned_segments, owner
from procflow.messages import Segment
from procflow.shm import SegmentWriter
from procflow.shm_read import load_value
from procflow.task_runners import ProcessPoolTaskRunner

MiB = 1 << 20


@task
def array_sum(array):
    return float(array.sum())


@task
def full(value):
    return np.full(MiB // 8 * 2, value)  # 2 MiB: a shared-memory result


@flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
def sums(value):
    """The flow's own array (written by the parent) and a task's (written by a worker)."""
    mine = np.full(MiB // 8 * 2, value)
    made = full.submit(value)
    return array_sum.submit(mine).result(), array_sum.submit(made).result(), float(made.result().sum())


def test_flows_in_threads_on_one_runner_each_compute_on_their_own_arrays():
    """Issue 15: the second flow overwrote the first's segments (names counted from 0, no O_EXCL),
    and the same flow object called from two threads hung (one runner's per-run state)."""
    expected = {value: (value * MiB / 4,) * 3 for value in range(1, 5)}
    for _ in range(5):  # the race: repeated
        results: dict[int, tuple] = {}
        errors: list[BaseException] = []

        def call(value: int, results: dict = results, errors: list = errors) -> None:
            try:
                results[value] = sums(float(value))
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        threads = [threading.Thread(target=call, args=(value,)) for value in expected]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not [thread for thread in threads if thread.is_alive()], "a flow run hung"
        assert not errors, errors
        assert results == expected


@task
def hold_large():
    return np.full(MiB // 4, 7.0)  # 2 MiB


def test_one_flow_run_ending_leaves_another_runs_results_alone():
    """Issue 15: the end of one flow run unlinked the other's live results ("unknown names")."""
    produced, other_done = threading.Event(), threading.Event()
    seen: dict[str, float] = {}

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def holder():
        future = hold_large.submit()
        future.wait()
        produced.set()
        assert other_done.wait(120)
        seen["holder"] = float(future.result().sum())

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def short():
        return hold_large.submit().result().sum()

    thread = threading.Thread(target=holder)
    thread.start()
    assert produced.wait(120)
    for _ in range(3):
        short()  # ends while holder's result lives
    other_done.set()
    thread.join(120)
    assert seen == {"holder": 7.0 * MiB / 4}


def test_segment_names_are_unguessable_and_never_repeat():
    token = owner().token
    names = {ownership.segment_name(token) for _ in range(2000)}
    assert len(names) == 2000
    for name in names:
        assert len(name) <= 30 and name.startswith(f"procflow-{token}-")  # macOS's limit
        assert len(name.rsplit("-", 1)[1]) == ownership.RANDOM_CHARS  # 36**13 > 2**67
    assert 36 ** ownership.RANDOM_CHARS > 2 ** 64


def test_a_new_writer_in_a_reused_pid_never_overwrites_a_held_result():
    """Issue 15: a new worker with a dead worker's pid wrote over its results (same names)."""
    token = owner().token
    first = SegmentWriter(token).store(np.full(MiB // 4, 1.0), MiB // 2, [])
    second = SegmentWriter(token).store(np.full(MiB // 4, 2.0), MiB // 2, [])  # "the same pid, counter at 0"
    try:
        assert first.segment.name != second.segment.name
        assert float(load_value(first.data, first.segment, first.spans).sum()) == MiB / 4
    finally:
        for ref in (first, second):
            os.unlink(os.path.join(SHM_DIR, ref.segment.name))


def test_a_planted_segment_name_is_never_opened_and_the_run_gets_its_own_data(monkeypatch):
    """Another user who guesses (here: is handed) the next name and pre-creates it 0666
    must neither read nor alter the result: O_EXCL refuses the name, another is drawn."""
    token = owner().token
    planted = ownership.segment_name(token)
    path = os.path.join(SHM_DIR, planted)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
    os.write(fd, b"evil" * 1024)
    os.close(fd)
    names = iter([planted])
    real = ownership.segment_name
    monkeypatch.setattr("procflow.shm.segment_name", lambda t: next(names, None) or real(t))
    try:
        ref = SegmentWriter(token).store(np.full(MiB // 4, 3.0), MiB // 2, [])
        assert ref.segment.name != planted
        assert float(load_value(ref.data, ref.segment, ref.spans).sum()) == 3.0 * MiB / 4
        with open(path, "rb") as planted_file:
            assert planted_file.read() == b"evil" * 1024, "the planted file was written into"
        os.unlink(os.path.join(SHM_DIR, ref.segment.name))
    finally:
        os.unlink(path)


def test_a_lent_segment_that_is_not_ours_is_refused(tmp_path):
    """A name in the pool is opened only when this user owns it 0600 (nobody else could make it)."""
    token = owner().token
    name = ownership.segment_name(token)
    fd = os.open(os.path.join(SHM_DIR, name), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    os.ftruncate(fd, 4 * MiB)
    os.close(fd)
    try:
        lent = [Segment(name, 4 * MiB)]
        ref = SegmentWriter(token).store(np.full(MiB // 4, 5.0), MiB // 2, lent)
        assert ref.segment.name != name, "a 0644 segment was written into"
        os.unlink(os.path.join(SHM_DIR, ref.segment.name))
    finally:
        os.unlink(os.path.join(SHM_DIR, name))


def _modes(paths):
    return {path: (stat.S_IMODE(os.lstat(path).st_mode), os.lstat(path).st_uid) for path in paths}


def test_everything_procflow_makes_is_the_users_own_0600_and_0700():
    checked: dict[str, tuple[int, int]] = {}

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def look():
        held = full.submit(1.0)
        array_sum.submit(np.ones(MiB)).wait()
        held.wait()
        directory = owner().directory
        checked.update(_modes([os.path.join(SHM_DIR, n) for n in os.listdir(SHM_DIR)
                               if n.startswith(f"procflow-{current_token()}")]))
        checked.update(_modes([directory]))
        checked.update(_modes([os.path.join(directory, n) for n in os.listdir(directory)]))
        return held

    look()
    directory = owner().directory
    assert stat.S_IMODE(os.lstat(directory).st_mode) == 0o700
    files = [path for path in checked if path != directory]
    assert any(os.path.basename(path).startswith("fn-") for path in files), "the task pickles were checked"
    assert any(path.startswith(SHM_DIR) and not path.endswith(".lock") for path in files), "segments were checked"
    wrong = {path: (oct(mode), uid) for path, (mode, uid) in checked.items()
             if uid != os.geteuid() or mode != (0o700 if path == directory else 0o600)}
    assert not wrong, wrong


def test_a_removed_directory_or_function_file_is_written_again():
    """Issue 15: a tmp cleaner that removed `fn-<key>` broke that task for the process's life."""
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def once():
        return array_sum.submit(np.arange(10.0)).result()

    assert once() == 45.0
    old = owner().directory
    for name in os.listdir(old):
        if name.startswith("fn-"):
            os.unlink(os.path.join(old, name))
    fresh_workers = ProcessPoolTaskRunner(max_workers=2)  # another pool: new workers must load the file

    @flow(task_runner=fresh_workers)
    def again():
        return array_sum.submit(np.arange(10.0)).result()

    assert again() == 45.0
    shutil.rmtree(owner().directory)
    assert once() == 45.0, "a new directory, and its files, after the whole directory went"
    assert owner().directory != old


ODD_NAMES = ["procflow-\u00b2-x", "procflow-", "procflow-abc", "procflow-zzzzzzz-short", "procflow-9-9-9",
             "procflow-ZZZZZZZ-aaaaaaaaaaaaa", "procflow-\u0661\u0662\u0663\u0664\u0665\u0666\u0667.lock"]


def _segment_file(name: str, size: int = 4096) -> str:
    path = os.path.join(SHM_DIR, name)
    with open(path, "wb") as file:
        file.write(b"x" * size)
    os.chmod(path, 0o600)
    return path


def test_the_sweep_removes_dead_owners_only_and_survives_odd_names():
    dead, unlocked, alive = "deadbee", "nolock0", "alive00"
    paths = {token: _segment_file(f"procflow-{token}-{ownership.random_part(13)}") for token in (dead, unlocked, alive)}
    lock_paths = {token: _segment_file(f"procflow-{token}.lock", 0) for token in (dead, alive)}
    os.unlink(lock_paths.pop(dead))  # its owner's lock is gone: it ended
    unlocked_lock = _segment_file(f"procflow-{unlocked}.lock", 0)  # a lock file nobody holds: its owner died
    holder = os.open(lock_paths[alive], os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a live owner (another open file: flock conflicts in-process too)
    odd = [_segment_file(name) for name in ODD_NAMES]
    try:
        swept = ownership.sweep()
        assert not os.path.exists(paths[dead]) and not os.path.exists(paths[unlocked])
        assert not os.path.exists(unlocked_lock)
        assert os.path.exists(paths[alive]) and os.path.exists(lock_paths[alive]), "a live owner's segment went"
        assert all(os.path.exists(path) for path in odd), "an odd name was removed"
        assert set(map(os.path.basename, swept)) >= {os.path.basename(paths[dead]), os.path.basename(paths[unlocked])}
    finally:
        os.close(holder)
        for path in [*odd, paths[alive], lock_paths[alive]]:
            os.unlink(path)


HOLDER = textwrap.dedent("""
    import os, sys, numpy as np
    from procflow import flow, task
    from procflow.ownership import current_token, owned_segments

    @task
    def big():
        return np.ones(1 << 19)

    @flow
    def hold(then: str):
        future = big.submit()
        future.wait()
        print(current_token(), len(owned_segments(current_token())), flush=True)
        if then == "die":
            os.kill(os.getpid(), 9)
        sys.stdin.readline()  # until the test has swept
        return float(future.result().sum())

    if __name__ == "__main__":
        print(hold(sys.argv[1]), flush=True)
""")


def test_a_process_that_already_ran_flows_sweeps_a_dead_owner_at_its_next_start(tmp_path):
    """Issue 15: the sweep ran once per process, so a notebook kept a killed run's segments."""
    assert sums(1.0)  # this process has started a runner before
    script = tmp_path / "dies.py"
    script.write_text(HOLDER)
    died = subprocess.run([sys.executable, str(script), "die"], capture_output=True, text=True, timeout=120)
    token, count = died.stdout.split()
    assert died.returncode == -9 and int(count) >= 1
    lock = os.path.join(SHM_DIR, f"procflow-{token}.lock")
    deadline = time.monotonic() + 10
    # A sweep removes the segments, then the lock file: the dead process's guardian sweeps
    # too, and may be between the two when this test looks.
    while (owned_segments(token) or os.path.exists(lock)) and time.monotonic() < deadline:
        sums(2.0)  # a new start sweeps; its workers may still be writing for a moment
        if owned_segments(token) or os.path.exists(lock):
            time.sleep(0.5)
    assert not owned_segments(token)
    assert not os.path.exists(lock)


def _can_unshare(*flags: str) -> str | None:
    if not shutil.which("unshare"):
        return "unshare(1) is not installed"
    probe = subprocess.run(["unshare", *flags, "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare {' '.join(flags)} is not permitted here: {probe.stderr.strip()}"


NO_PID_NAMESPACE = _can_unshare("--pid", "--fork", "--mount-proc")


@pytest.mark.skipif(NO_PID_NAMESPACE is not None, reason=str(NO_PID_NAMESPACE))
def test_the_sweep_leaves_a_live_owner_in_another_pid_namespace_alone(tmp_path):
    """Containers of one pod share /dev/shm but not pids: the owner's pid means nothing here."""
    script = tmp_path / "live.py"
    script.write_text(HOLDER)
    other = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, str(script), "wait"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        token = other.stdout.readline().split()[0]
        assert owned_segments(token), "the other namespace's flow holds a segment"
        ownership.sweep()
        sums(1.0)  # and a whole start
        assert owned_segments(token), "the sweep removed a live owner's segment"
        out, _ = other.communicate("go\n", timeout=120)
        assert float(out.split()[-1]) == float(1 << 19), "its result was intact"
    finally:
        other.kill()
        other.wait()


# -- another local user -------------------------------------------------------------------

NOBODY = 65534


def _second_user_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to act as a second user (setpriv --reuid)"
    if not shutil.which("setpriv"):
        return "setpriv(1) is not installed"
    return _can_unshare("-m", "--propagation", "private")


VICTIM = textwrap.dedent("""
    import glob, os, subprocess, sys, tempfile
    import numpy as np
    from procflow import flow, task
    from procflow.ownership import current_token, owner

    def as_attacker(command):
        return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", command],
                              capture_output=True, text=True)

    @task
    def big(value):
        return np.full(1 << 18, value)

    @task
    def total(array):
        return float(array.sum())

    @flow
    def work(value):
        made = big.submit(value)
        made.wait()
        report = {}
        mine = glob.glob(f"/dev/shm/procflow-{current_token()}-*")
        report["read_segment"] = as_attacker(f"cat {mine[0]} > /dev/null").returncode
        report["list_dir"] = as_attacker(f"ls {owner().directory}").returncode
        report["read_pickle"] = as_attacker(f"cat {owner().directory}/fn-*").returncode
        report["write_segment"] = as_attacker(f"echo evil > {mine[0]}").returncode
        report["total"] = total.submit(made).result()
        return report

    if __name__ == "__main__":
        print(work(2.0))
        print(work(3.0))
""")

ATTACK = """
set -e
# Stale files of another user that look like procflow's: a dead owner's lock and segment,
# odd names, a directory and symlinks in TMPDIR where procflow makes its own.
for token in aaaaaaa bbbbbbb; do
  touch /dev/shm/procflow-$token.lock /dev/shm/procflow-$token-0000000000000
  chmod 666 /dev/shm/procflow-$token-0000000000000
done
touch '/dev/shm/procflow-\u00b2-x' /dev/shm/procflow-x
mkdir -p "$TMPDIR/procflow-boards-1" "$TMPDIR/procflow-ccccccc-xyz"
ln -s /etc/passwd "$TMPDIR/procflow-ddddddd-link"
ln -s /etc/passwd /dev/shm/procflow-eeeeeee-0000000000000
"""


NO_SECOND_USER = _second_user_reason()


@pytest.mark.skipif(NO_SECOND_USER is not None, reason=str(NO_SECOND_USER))
def test_another_user_can_read_nothing_plant_nothing_and_stop_nothing(tmp_path):
    """As root with a second uid (nobody), in a private mount namespace with its own /dev/shm
    and TMPDIR: the other user's stale look-alikes neither stop the flow nor get removed; it
    can read no segment, list no directory, read no pickle; the results are right."""
    script = tmp_path / "victim.py"
    script.write_text(VICTIM)
    private_tmp = "/tmp/procflow-isolation-test"
    inner = (f"mount -t tmpfs -o mode=1777 tmpfs /dev/shm && mkdir -p {private_tmp} && "
             f"mount -t tmpfs -o mode=1777 tmpfs {private_tmp} && export TMPDIR={private_tmp} && "
             f'setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups sh -c "$ATTACK" && '
             f"{sys.executable} {script} && ls -la /dev/shm $TMPDIR")
    try:
        done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", inner],
                              capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                              env={**os.environ, "ATTACK": ATTACK})
    finally:
        if os.path.isdir(private_tmp):
            os.rmdir(private_tmp)  # the mount point, made outside the namespace: empty here
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [eval(line) for line in done.stdout.splitlines() if line.startswith("{")]  # noqa: S307 - our own output
    assert [report["total"] for report in reports] == [2.0 * (1 << 18), 3.0 * (1 << 18)]
    for report in reports:
        assert report["read_segment"] != 0 and report["write_segment"] != 0, report
        assert report["list_dir"] != 0 and report["read_pickle"] != 0, report
    listing = done.stdout
    for planted in ("procflow-aaaaaaa.lock", "procflow-aaaaaaa-0000000000000", "procflow-x",
                    "procflow-ccccccc-xyz", "procflow-ddddddd-link", "procflow-eeeeeee-0000000000000"):
        assert planted in listing, f"the other user's {planted} was removed"
    assert "nobody" in listing
