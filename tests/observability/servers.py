"""Real Prometheus and node_exporter for the observability tests: own config and data dirs, loopback, free
high ports (the Debian packages' own services, if any, are left alone)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

NODE_EXPORTER = "prometheus-node-exporter"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout} s")


def start_node_exporter(textfile_dir: Path, log: Path) -> tuple[subprocess.Popen, str]:
    exe = shutil.which(NODE_EXPORTER) or shutil.which("node_exporter")
    address = f"127.0.0.1:{free_port()}"
    # only the textfile collector: light, and nothing but the agents' files is served
    proc = subprocess.Popen(
        [exe, f"--web.listen-address={address}", "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={textfile_dir}"],
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    wait_http(f"http://{address}/metrics", proc)
    return proc, address


@dataclass
class Prometheus:
    proc: subprocess.Popen
    url: str

    def get(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query; raises (HTTP 400) when the expression does not parse or evaluate."""
        try:
            return self.get("/api/v1/query", query=expr)["result"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{expr}: {exc.read().decode()}") from exc

    def wait_for(self, expr: str, predicate=bool, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if predicate(result) or time.monotonic() > deadline:
                return result
            time.sleep(0.5)


def start_prometheus(root: Path, target: str, rule_file: Path) -> Prometheus:
    address = f"127.0.0.1:{free_port()}"
    config = root / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {rule_file}\n"
        f"scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{target}']\n")
    (root / "data").mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [shutil.which("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
         f"--web.listen-address={address}", "--web.enable-lifecycle"],
        stdout=(root / "prometheus.log").open("w"), stderr=subprocess.STDOUT)
    wait_http(f"http://{address}/-/ready", proc, timeout=60)
    return Prometheus(proc, f"http://{address}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
