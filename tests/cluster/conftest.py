"""A real Spark standalone cluster on 127.0.0.1: one master, two workers of one core each,
started from pyspark's own bin/spark-class, as an operator would start them."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyspark
import pytest

ROOT = Path(__file__).resolve().parents[2]
SPARK_HOME = Path(pyspark.__file__).parent


@dataclass
class Cluster:
    url: str
    processes: list[subprocess.Popen]
    logs: Path

    def executor_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-f", "CoarseGrainedExecutorBackend"], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), *args], stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_for(log: Path, text: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(1)
    raise TimeoutError(f"{log}: '{text}' x{count} not seen in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    logs = tmp_path_factory.mktemp("cluster")
    env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "SPARK_LOG_DIR": str(logs)}
    port = free_port()
    master = _start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
                     "--webui-port", str(free_port())], logs / "master.log", env)
    processes = [master]
    try:
        _wait_for(logs / "master.log", "I have been elected leader", 1, 120)
        for i in (1, 2):
            worker_env = {**env, "SPARK_WORKER_DIR": str(logs / f"worker{i}")}
            processes.append(_start(["org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
                                     "--host", "127.0.0.1", "--cores", "1", "--memory", "2500m",
                                     "--webui-port", str(free_port())], logs / f"worker{i}.log", worker_env))
        _wait_for(logs / "master.log", "Registering worker", 2, 120)
        yield Cluster(url=f"spark://127.0.0.1:{port}", processes=processes, logs=logs)
    finally:
        for process in reversed(processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def submit(job: str, *args: str, master: str | None = None, spark_options: tuple[str, ...] = (),
           env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ./spark-submit.sh the way an operator or a scheduler would."""
    command = [str(ROOT / "spark-submit.sh"), job, *args]
    if master:
        command += ["--master", master, "--", "--total-executor-cores", "2", "--executor-cores", "1",
                    "--executor-memory", "1500m", *spark_options]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def spark_submit():
    return submit
