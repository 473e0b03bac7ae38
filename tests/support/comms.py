"""Agents that talk over the bus, as real processes of real users: a home and a runtime config per agent
(per test), `keystone-agent` run with runuser, the comms path unit emulated (inotify on the wake file →
`comms drain` → `loop`), and a stand-in provider that answers asks through the task report."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

RUNUSER = shutil.which("runuser") or "/usr/sbin/runuser"

# The stand-in provider: it answers every task with a report whose `reply` echoes the question's first line
# reversed and upper-cased (deterministic, and plainly not an echo of the prompt), and logs the prompt.
PROVIDER = '''\
import json, os, sys
prompt = sys.stdin.read()
question = prompt.split("Description: ", 1)[1].split("\\n", 1)[0]
with open(os.environ["KEYSTONE_TASK_RESULT"], "w") as out:
    json.dump({"status": "completed", "message": "answered", "reply": "ANSWER:" + question[::-1].upper()}, out)
print("answered", question)
'''


def expected_answer(question: str) -> str:
    return "ANSWER:" + question[::-1].upper()


@dataclass
class Agent:
    key: str
    home: Path
    env_: "CommsAgents"

    @property
    def user(self) -> str:
        return self.env_.bus_env.users[self.key]

    @property
    def config_path(self) -> Path:
        return self.home / ".config/keystone-agent/config.json"

    @property
    def state(self) -> Path:
        return self.home / ".local/state/agent-task-loop/state"

    def argv(self, *args: str) -> list[str]:
        return [RUNUSER, "-u", self.user, "--", str(self.env_.bus_env.world.bin_dir / "keystone-agent"), *args]

    def env(self) -> dict:
        return {"PATH": f"{self.env_.bus_env.world.bin_dir}:/usr/bin:/bin", "HOME": str(self.home),
                "USER": self.user, "LANG": "C.UTF-8", "KEYSTONE_AGENT_HOME": str(self.home),
                "KEYSTONE_AGENT_CONFIG": str(self.config_path)}

    def run(self, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), env=self.env(), input=input, capture_output=True, text=True,
                              timeout=timeout, cwd="/")

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*args), env=self.env(), cwd="/", text=True, **kwargs)

    def tasks(self) -> list[dict]:
        path = self.home / "TASKS.yaml"
        if not path.exists():
            return []
        return (yaml.safe_load(path.read_text()) or {}).get("tasks") or []

    def info(self) -> dict:
        done = self.run("comms", "info", "--json")
        assert done.returncode == 0, done.stderr + done.stdout
        return json.loads(done.stdout)


@dataclass
class CommsAgents:
    bus_env: object
    root: Path
    agents: dict[str, Agent] = field(default_factory=dict)
    listeners: list[subprocess.Popen] = field(default_factory=list)

    def agent(self, key: str, **config) -> Agent:
        users = self.bus_env.users
        home = self.root / key
        home.mkdir(parents=True)
        settings = self.bus_env.settings
        coordination = {"backend": settings.backend, "maxDeliveries": settings.max_deliveries,
                        "leaseSeconds": settings.lease_seconds}
        if settings.backend == "local":
            coordination["local"] = {"socket": settings.local.socket, "wakeDir": settings.local.wake_dir}
        else:
            pg = settings.postgresql
            coordination["postgresql"] = {"host": pg.host, "port": pg.port, "database": pg.database}
        coordination.update(config.pop("coordination", {}))
        provider = self.root / "provider.py"
        if not provider.exists():
            provider.write_text(PROVIDER)
            provider.chmod(0o644)
        data = {"agentName": key, "coordination": coordination, "defaults": {"provider": "command"},
                "commandProvider": {"argv": [str(self.bus_env.world.bin_dir / "python"), str(provider)]},
                "killGraceSeconds": 0.5, "textfileDir": str(home / "metrics"), **config}
        path = home / ".config/keystone-agent/config.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(data, indent=2))
        (home / "notes").mkdir()  # the agent space: providers run there
        for item in [home, *home.rglob("*")]:
            shutil.chown(item, users[key])
        home.chmod(0o700)
        agent = Agent(key, home, self)
        self.agents[key] = agent
        return agent

    def host_config(self) -> Path:
        """This test's host configuration (the world's, pointing at this test's bus)."""
        path = self.root / "agentctl.json"
        if not path.exists():
            data = json.loads(self.bus_env.world.host_config.read_text())
            settings = self.bus_env.settings
            data["coordination"]["backend"] = settings.backend
            if settings.backend == "postgresql":
                pg = settings.postgresql
                data["coordination"]["postgresql"] = {"host": pg.host, "port": pg.port, "database": pg.database}
            path.write_text(json.dumps(data, indent=2))
            path.chmod(0o644)
        return path

    def agentctl(self, key: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        """agentctl as the Linux user of `key` (a human admin, say)."""
        users = self.bus_env.users
        argv = [RUNUSER, "-u", users[key], "--", str(self.bus_env.world.bin_dir / "agentctl"), "--config",
                str(self.host_config()), *args]
        return subprocess.run(argv, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, input=input or "",
                              capture_output=True, text=True, timeout=120, cwd="/")

    def close(self) -> None:
        for proc in self.listeners:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


class PathUnit:
    """agent-<name>-comms.path + agent-<name>-loop-rerun.path, emulated: inotify (inotifywait) on the wake file
    → `comms drain` as the agent → `loop` while state/run-requested exists."""

    def __init__(self, agent: Agent, wake_file: Path):
        self.agent, self.wake_file = agent, wake_file
        self.wakes: list[float] = []
        self.runs: list[subprocess.CompletedProcess] = []
        self.stop = threading.Event()
        if not wake_file.parent.exists():  # the agent's own state dir (postgresql): made as the agent would
            agent.run("comms", "info")
            wake_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.chown(wake_file.parent, agent.user)
        # like systemd's PathChanged: watch the directory, react to the file being closed after writing
        self.proc = subprocess.Popen(["inotifywait", "-q", "-m", "-e", "close_write,moved_to", "--format", "%f",
                                      str(wake_file.parent)], stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)  # inotifywait sets its watch
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if self.stop.is_set():
                return
            if line.strip() != self.wake_file.name:
                continue
            self.wakes.append(time.time())
            drained = self.agent.run("comms", "drain")
            self.runs.append(drained)
            while (self.agent.state / "run-requested").exists():
                self.runs.append(self.agent.run("loop", timeout=300))

    def close(self) -> None:
        self.stop.set()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait()


def new_id() -> str:
    return str(uuid.uuid4())


__all__ = ["Agent", "CommsAgents", "PathUnit", "expected_answer", "new_id", "os", "textwrap"]


def ok(done: subprocess.CompletedProcess) -> str:
    """The stdout of a command that must have succeeded (else its exit code and both streams)."""
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout
