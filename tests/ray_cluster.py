"""A real Ray cluster on loopback for tests and bench/: a head node and worker nodes, each a
`ray start --block` process of its own (its own raylet and worker processes), so a node can be
killed alone. Token authentication is off: the cluster listens on 127.0.0.1 only and lives
for one test module."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What the cluster's processes and every driver that joins it need in their environment.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           # a killed node is noticed in about a second, not the default half minute
           "RAY_health_check_period_ms": "300", "RAY_health_check_failure_threshold": "3",
           "RAY_health_check_timeout_ms": "300"}
OBJECT_STORE_BYTES = str(80 * 1024 * 1024)  # Ray's floor; the runs pass little through it


def ray_command() -> str:
    """The `ray` script installed beside this interpreter (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    """`with RayCluster(worker_nodes=1) as cluster:` then `--address cluster.address`."""

    def __init__(self, worker_nodes: int = 1, cpus_per_node: int = 1):
        self.worker_nodes = worker_nodes
        self.cpus = cpus_per_node
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # short: Ray's unix socket paths live under it and must stay under 108 characters
        self.temp = Path(tempfile.mkdtemp(prefix="rayt", dir="/tmp"))
        self.head: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    def _node(self, *args: str, log: str) -> subprocess.Popen:
        out = open(self.temp / log, "wb")
        return subprocess.Popen([ray_command(), "start", *args, "--node-ip-address=127.0.0.1",
                                 f"--num-cpus={self.cpus}", f"--object-store-memory={OBJECT_STORE_BYTES}",
                                 "--block"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **RAY_ENV})

    def __enter__(self) -> "RayCluster":
        self.head = self._node("--head", f"--port={self.port}", "--include-dashboard=false",
                               "--disable-usage-stats", f"--temp-dir={self.temp}", log="head.log")
        self._wait_for_port()
        for i in range(self.worker_nodes):
            self.workers.append(self._node(f"--address={self.address}", log=f"worker{i}.log"))
        self._wait_for_nodes(1 + self.worker_nodes)
        return self

    def _wait_for_nodes(self, count: int, timeout: float = 90) -> None:
        """Until every node has joined (a worker node can take seconds on a busy machine, and a
        command started before would see fewer CPUs), asked by a driver of its own."""
        probe = ("import ray, sys, time\n"
                 f"ray.init(address='{self.address}', log_to_driver=False, configure_logging=False)\n"
                 f"deadline = time.monotonic() + {timeout}\n"
                 f"while sum(n['Alive'] for n in ray.nodes()) < {count}:\n"
                 "    if time.monotonic() > deadline: sys.exit(1)\n"
                 "    time.sleep(0.1)\n")
        done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **RAY_ENV}, capture_output=True,
                              text=True, timeout=timeout + 30)
        if done.returncode != 0:
            raise TimeoutError(f"{count} Ray nodes did not join within {timeout} s: {done.stderr[-2000:]}"
                               f"{self.log('worker0.log')}")

    def _wait_for_port(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.head is not None and self.head.poll() is None, self.log("head.log")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"the Ray head did not listen on {self.address}: {self.log('head.log')}")

    def log(self, name: str) -> str:
        path = self.temp / name
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill_worker_node(self, index: int = 0) -> None:
        """SIGKILL a worker node's whole process group: its raylet and worker processes."""
        node = self.workers[index]
        os.killpg(node.pid, signal.SIGKILL)
        node.wait(timeout=30)

    def __exit__(self, *exc: object) -> None:
        """SIGTERM, then SIGKILL after a moment: a throwaway cluster need not shut down politely
        (`ray start --block` alone takes half a minute to)."""
        nodes = [*self.workers, *([self.head] if self.head else [])]
        for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 10.0)):
            for node in nodes:
                if node.poll() is None:
                    try:
                        os.killpg(node.pid, sig)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(node.poll() is None for node in nodes):
                time.sleep(0.05)
        shutil.rmtree(self.temp, ignore_errors=True)
