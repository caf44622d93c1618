"""`search --workers N`: queue the grid once, then run N worker processes, each pinned to a GPU.

The workers coordinate through the study storage alone (search.py: enqueued grid, atomic claim,
heartbeats); this module queues the study (no TensorFlow in this process), starts the workers,
pins each to a GPU, shares out the CPU threads, prefixes their output with the worker number and
forwards Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .config import TrainConfig
    from .gridspec import GridPoint
    from .status import StudyStatus

STORAGE_ENV = "BCPARETO_STORAGE"  # --storage's environment variable: keeps a password out of `ps`
WORKER_COUNT_ENV = "BCPARETO_WORKER_COUNT"  # set for each worker: how many share this machine's study


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

    Returns each worker's exit and whether the run was interrupted (Ctrl-C or SIGTERM). The
    first interrupt is forwarded to every worker as SIGINT, so each marks its running trial
    failed ('interrupted') and exits; a second one kills them (their trials then go stale and
    are retried by the next search).
    """
    gpus = visible_gpus()
    procs: list[tuple[int, str | None, subprocess.Popen[str]]] = []
    readers: list[threading.Thread] = []
    lock = threading.Lock()
    interrupted = False
    try:
        for index in range(1, n_workers + 1):
            env = worker_env(index - 1, n_workers=n_workers, gpus=gpus, storage_url=storage_url)
            gpu = env["CUDA_VISIBLE_DEVICES"] if gpus else None
            proc = subprocess.Popen(
                [sys.executable, "-m", "bcpareto", "search", *search_args, "--worker-index", str(index)],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, errors="replace", bufsize=1,
                start_new_session=True,  # a terminal's Ctrl-C reaches the parent, which forwards it once
            )
            procs.append((index, gpu, proc))
            echo(f"[worker {index}] started, pid {proc.pid}" + (f", GPU {gpu}" if gpu is not None else ""))
            assert proc.stdout is not None
            reader = threading.Thread(
                target=_relay, args=(proc.stdout, f"[worker {index}] ", echo, lock), daemon=True
            )
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
    for reader in readers:
        reader.join(timeout=5)
    return [WorkerExit(i, gpu, p.returncode) for i, gpu, p in procs], interrupted


def _relay(stream: IO[str], prefix: str, echo: Callable[[str], None], lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            echo(prefix + line.rstrip("\n"))


@dataclass(frozen=True)
class WorkersOutcome:
    state: StudyStatus  # the study after the workers ended
    exits: list[WorkerExit]
    interrupted: bool
    workers: int
    wall_seconds: float


def search_in_workers(
    points: list[GridPoint], *, config: TrainConfig, worker_args: list[str], grid_name: str,
    data_dir: Path, run_dir: Path, storage_url: str | None, study_name: str | None, workers: int,
    retry_failed: bool, repeats: int = 1, on_bad_image: str = "skip", strategy: Any = None,
    echo: Callable[[str], None] = print,
) -> WorkersOutcome:
    """Check the data, open and queue the study here, then run ``workers`` worker searches on it.

    ``worker_args``: the search's command-line arguments for each worker (sheet and options);
    the study's name is added, so every worker joins the study queued here.
    """
    from .data import load_data_for
    from .metrics_log import update_metrics_csv
    from .pausepoints import pause_point
    from .search import check_search_inputs, image_sizes, open_study
    from .strategy import Strategy
    from .status import study_status
    from .storage import redact

    started = time.perf_counter()
    check_search_inputs(points, config=config, data_dir=data_dir, run_dir=run_dir,
                        storage_url=storage_url)
    # Decode here, once per image size the search may train, before the study is queued: an
    # unusable data set (a class with no readable image) stops the command with nothing created,
    # and the workers read the cache instead of each decoding every size at once.
    sizes = image_sizes(points, config, strategy or Strategy())
    for size in sizes:
        data = load_data_for(data_dir, dataclasses.replace(config, image_size=size), on_bad_image=on_bad_image)
        if data.skipped and size == sizes[0]:
            echo(f"  skipped {len(data.skipped)} unreadable file(s): " + ", ".join(data.skipped[:5]))
        del data
    handle = open_study(points, config=config, run_dir=run_dir, grid_name=grid_name,
                        storage_url=storage_url, study_name=study_name, retry_failed=retry_failed,
                        repeats=repeats, strategy=strategy)
    echo(f"Study {handle.name!r} on {redact(handle.url)}: starting {workers} workers")
    pause_point("queued")
    exits, interrupted = run_workers(
        [*worker_args, "--study", handle.name], n_workers=workers, storage_url=handle.url, echo=echo
    )
    update_metrics_csv(handle.study, run_dir, echo=echo)
    [state] = study_status(handle.url, study_name=handle.name)
    return WorkersOutcome(state, exits, interrupted, workers, time.perf_counter() - started)
