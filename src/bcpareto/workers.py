"""`search --workers N`: queue the grid once, then run N worker processes, each pinned to a GPU.

The workers coordinate through the study storage alone (search.py: enqueued grid, atomic claim,
heartbeats); this module queues the study (no TensorFlow in this process), starts the workers,
pins each to a GPU, shares out the CPU threads, relays their output with the worker number
(never holding a worker up), forwards Ctrl-C, hangups and Ctrl-Z, and makes the workers stop
when this process is gone.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Callable

from .progress import WORKER_COUNT_ENV, stdout_gone

if TYPE_CHECKING:
    from .request import SearchRequest
    from .status import StudyStatus

STORAGE_ENV = "BCPARETO_STORAGE"  # --storage's environment variable: keeps a password out of `ps`


def visible_gpus() -> list[str]:
    """GPU ids a worker can be pinned to: CUDA_VISIBLE_DEVICES if set, else `nvidia-smi -L`."""
    pinned = os.environ.get("CUDA_VISIBLE_DEVICES")
    if pinned is not None:
        ids = [d.strip() for d in pinned.split(",") if d.strip()]
        return [] if not ids or ids[0].startswith("-") else ids  # "" or "-1": no GPU
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        listing = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, _ in enumerate(l for l in listing.splitlines() if l.startswith("GPU "))]


def auto_workers() -> int:
    """``--workers auto``: one worker per GPU; without one, a worker per core, each with one
    thread, at most 4 (measured on 2 cores only: 2 workers of 1 thread trained the edge grid's
    models 12-21% faster than one of 2 threads, benchmarks/bench_backends.py)."""
    gpus = visible_gpus()
    if gpus:
        return len(gpus)
    return max(1, min(4, len(os.sched_getaffinity(0))))


@dataclass(frozen=True)
class WorkerExit:
    index: int
    gpu: str | None
    returncode: int


def worker_env(index: int, *, n_workers: int, gpus: list[str], storage_url: str) -> dict[str, str]:
    """The environment of worker ``index``: its GPU, its share of CPU threads, the storage URL."""
    env = dict(os.environ)
    env[STORAGE_ENV] = storage_url
    env["PYTHONUNBUFFERED"] = "1"  # lines reach the parent as they are printed
    env[WORKER_COUNT_ENV] = str(n_workers)  # each worker's ETA shares the study's work among them
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        if n_workers > len(gpus):  # workers share a GPU: none may take its memory up front
            env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX takes 75% by default
            env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    # N workers each with TensorFlow's default pool (one thread per core) would oversubscribe
    # the CPU N times over; give each its share, unless the user set these already.
    threads = str(max(1, len(os.sched_getaffinity(0)) // n_workers))
    for var in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS"):
        env.setdefault(var, threads)
    env.setdefault("TF_NUM_INTEROP_THREADS", "1" if threads == "1" else "2")
    if threads == "1" and "intra_op_parallelism_threads" not in env.get("XLA_FLAGS", ""):
        # JAX on the CPU: XLA's own pool (torch follows OMP_NUM_THREADS)
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1").strip()
    return env


def run_workers(
    search_args: list[str],
    *,
    n_workers: int,
    storage_url: str,
    echo: Callable[[str], None] = print,
) -> tuple[list[WorkerExit], bool]:
    """Run ``bcpareto search *search_args`` in n_workers processes; wait for all of them.

    Returns each worker's exit and whether the run was interrupted (Ctrl-C, SIGTERM or a
    hangup). The first interrupt is forwarded to every worker as SIGINT, so each marks its
    running trial failed ('interrupted') and exits; a second one kills them (their trials then
    go stale and are retried by the next search). Ctrl-Z stops the workers with this process,
    and they go on when it does. The workers hold the read end of a pipe whose write end only
    this process holds (interrupts.LIFELINE_ENV): if this process dies, even by SIGKILL, they
    see the pipe close and stop as on a hangup, their trials marked interrupted. Their output
    is relayed without ever holding them up (_Output).
    """
    gpus = visible_gpus()
    procs: list[tuple[int, str | None, subprocess.Popen[bytes]]] = []
    readers: list[threading.Thread] = []
    output = _Output(echo)
    lifeline, lifeline_end = os.pipe()  # never written: its EOF tells the workers this process is gone
    stop = _StopForwarder()
    interrupted = False
    try:
        try:
            for index in range(1, n_workers + 1):
                proc, gpu, stream = _start_worker(index, n_workers=n_workers, gpus=gpus,
                                                  storage_url=storage_url, args=search_args,
                                                  lifeline=lifeline)
                procs.append((index, gpu, proc))
                stop.procs.append(proc)
                output.say(f"[worker {index}] started, pid {proc.pid}" + (f", GPU {gpu}" if gpu is not None else ""))
                reader = threading.Thread(target=_drain, args=(stream, f"[worker {index}] ", output),
                                          daemon=True, name=f"bcpareto-relay-{index}")
                reader.start()
                readers.append(reader)
        except KeyboardInterrupt:
            interrupted = True
            for _, _, proc in procs:
                proc.send_signal(signal.SIGINT)

        while True:
            try:
                for _, _, proc in procs:
                    proc.wait()
                break
            except KeyboardInterrupt:
                sig = signal.SIGKILL if interrupted else signal.SIGINT
                interrupted = True
                for _, _, proc in procs:
                    if proc.poll() is None:
                        proc.send_signal(sig)
    finally:
        stop.restore()
        os.close(lifeline)
        os.close(lifeline_end)
    for reader in readers:
        reader.join(timeout=5)
    output.close(timeout=5)
    return [WorkerExit(i, gpu, p.returncode) for i, gpu, p in procs], interrupted


def _start_worker(
    index: int, *, n_workers: int, gpus: list[str], storage_url: str, args: list[str], lifeline: int
) -> tuple[subprocess.Popen[bytes], str | None, IO[str]]:
    """Start worker ``index`` (from 1): the process, its GPU, the stream of its stdout and stderr.

    It runs in a process group of its own, in this session: a terminal's Ctrl-C and Ctrl-Z reach
    this process only, which forwards them once (each worker getting a terminal's SIGINT as well
    as the forwarded one could cut its cleanup short), and the kernel still hangs up on a stopped
    worker whose parent died (it does so within a session only). Besides the lifeline it keeps a
    read end of its own output pipe, so its prints never fail with a broken pipe once this
    process is gone (interrupts._on_parent_exit).
    """
    from .interrupts import LIFELINE_ENV

    env = worker_env(index - 1, n_workers=n_workers, gpus=gpus, storage_url=storage_url)
    out_read, out_write = os.pipe()
    env[LIFELINE_ENV] = f"{lifeline},{out_read}"
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bcpareto", "search", *args, "--worker-index", str(index)],
            env=env, stdin=subprocess.DEVNULL, stdout=out_write, stderr=subprocess.STDOUT,
            pass_fds=(lifeline, out_read), process_group=0,
        )
    except BaseException:
        os.close(out_read)
        raise
    finally:
        os.close(out_write)  # the worker's copy is the only writer left: EOF when it exits
    gpu = env["CUDA_VISIBLE_DEVICES"] if gpus else None
    return proc, gpu, open(out_read, errors="replace")  # closed by _drain


class _StopForwarder:
    """While the workers run, Ctrl-Z (SIGTSTP) stops them with this process; both go on together.

    The terminal sends SIGTSTP to this process's group, which the workers are not in: this
    handler stops each of them (SIGSTOP), stops this process as the default action would, and
    once resumed (fg, bg, SIGCONT) resumes them. Set up in the main thread only.
    """

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self._previous: Any = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTSTP, self._on_stop)

    def _on_stop(self, signum: int, frame: Any) -> None:
        live = [p for p in self.procs if p.returncode is None]
        for proc in live:
            proc.send_signal(signal.SIGSTOP)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)  # stops here; returns once this process is resumed
        signal.signal(signal.SIGTSTP, self._on_stop)
        for proc in live:
            proc.send_signal(signal.SIGCONT)

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTSTP, self._previous)


_QUEUED_LINES = 10_000  # lines held while stdout is slow to take them; past that, lines are dropped


class _Output:
    """Lines to ``echo`` (this process's stdout) from one writer thread: ``say`` never blocks.

    A worker is never held up by this process's stdout: each worker's pipe is drained by its
    own thread into a bounded queue. A stdout that is not read (a full pipe) costs the lines
    past the queue, counted in a line once it moves again; one that is closed (``| head``) or
    gone (a closed terminal) costs every line from then on, after one message on stderr, and
    this process's output goes to /dev/null: the search goes on as with ``> /dev/null``.
    """

    def __init__(self, echo: Callable[[str], None]) -> None:
        self._echo = echo
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=_QUEUED_LINES)
        self._dropped = 0
        self._gone = False
        self._writer = threading.Thread(target=self._write, daemon=True, name="bcpareto-output")
        self._writer.start()

    def say(self, line: str) -> None:
        if self._gone:
            return
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            self._dropped += 1

    def close(self, *, timeout: float) -> None:
        """Let the writer print what is queued, for up to ``timeout`` seconds if stdout is stuck."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._writer.join(timeout=timeout)

    def _write(self) -> None:
        while (line := self._queue.get()) is not None:
            if self._gone:
                continue
            try:
                if self._dropped:
                    dropped, self._dropped = self._dropped, 0
                    self._echo(f"[{dropped} line(s) of worker output dropped: stdout was not read]")
                self._echo(line)
            except UnicodeError:
                continue  # a line this stdout cannot encode
            except (OSError, ValueError) as exc:  # a broken pipe, a closed terminal, a closed file
                self._gone = True
                stdout_gone(exc, what="the workers' output")


def _drain(stream: IO[str], prefix: str, output: _Output) -> None:
    """Read one worker's output to its end, whatever becomes of this process's stdout."""
    try:
        for line in stream:
            output.say(prefix + line.rstrip("\n"))
    except (OSError, ValueError):
        pass
    finally:
        stream.close()


@dataclass(frozen=True)
class WorkersOutcome:
    state: StudyStatus  # the study after the workers ended
    exits: list[WorkerExit]
    interrupted: bool
    workers: int
    wall_seconds: float
    trained_now: int = 0  # completed during this command (by its workers, or another machine's)


def search_in_workers(request: SearchRequest, *, workers: int,
                      echo: Callable[[str], None] = print) -> WorkersOutcome:
    """Check the data, open and queue the study here, then run ``workers`` worker searches on it.

    Each worker gets the request (joined to the study queued here) as a file, and the storage
    URL in its environment (STORAGE_ENV: a password stays out of files and of `ps`). Its
    ``tracking`` (``--track``): the MLflow store and experiment are created here, once, so that
    the workers (each logging its own models) do not race to create them.
    """
    from .backends import describe_devices
    from .metrics_log import update_metrics_csv
    from .pausepoints import pause_point
    from .request import load_sizes
    from .progress import announce_estimate
    from .status import study_status
    from .storage import default_storage_url, redact
    from .study import open_study

    started = time.perf_counter()
    request.check()
    points, strategy = list(request.points), request.strategy
    # Decode here, once per image size the search may train, before the study is queued: an
    # unusable data set (a class with no readable image) stops the command with nothing created,
    # and the workers read the cache instead of each decoding every size at once. The header
    # (backend, data, splits) is said here, once; the workers do not repeat it.
    echo(f"Backend: {describe_devices()}")
    first = next(iter(load_sizes(points, config=request.config, strategy=strategy, data_dir=request.data_dir,
                                 on_bad_image=request.on_bad_image, echo=echo).values()))
    handle = open_study(points, config=request.config, run_dir=request.run_dir, grid_name=request.grid_name,
                        storage_url=request.storage_url, study_name=request.study_name,
                        retry_failed=request.retry_failed, repeats=request.repeats, strategy=strategy)
    if not strategy.sampled:  # the whole search's time, before any worker starts
        announce_estimate(points, handle.study, config=request.config, data=first, echo=echo, workers=workers)
    del first
    if request.tracking is not None and request.tracking.any():
        from .tracking import open_tracker

        open_tracker(request.tracking, run_dir=request.run_dir, study=handle.name, echo=echo)
    echo(f"Study {handle.name!r} on {redact(handle.url)}: starting {workers} workers")
    pause_point("queued")
    before = study_status(handle.url, study_name=handle.name)[0].completed
    # the workers' request: this study, already queued (retry_failed: queued here, once)
    path = request.for_study(handle.name).save(request.run_dir)
    try:
        exits, interrupted = run_workers(["--request", str(path)], n_workers=workers,
                                         storage_url=request.storage_url or default_storage_url(request.run_dir),
                                         echo=echo)
    finally:
        path.unlink(missing_ok=True)
    update_metrics_csv(handle.study, request.run_dir, echo=echo)
    [state] = study_status(handle.url, study_name=handle.name)
    return WorkersOutcome(state, exits, interrupted, workers, time.perf_counter() - started,
                          trained_now=max(state.completed - before, 0))
