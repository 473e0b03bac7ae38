"""Real Linux users, real sudo, and a host laid out as a NixOS switch lays it out — for tests of multi-user
behaviour (isolation, the admin helper, messaging between agents). Needs root and Debian's `sudo`
(scripts/install-system-deps); everything it creates is unique per session and removed afterwards, so parallel
runs from other worktrees do not collide.

Two layers:

    with RealUsers() as users:                       # users and groups only
        group = users.add_group("agents")            # → "ks<suffix>-agents"
        alice = users.add_user("alice", group)       # → RealUser(name="ks<suffix>-alice", …) with a 0750 home
        users.run_as(alice, ["id", "-un"])           # runuser -u … (argv only, explicit environment)

    with RealHost.create(["a", "b"]) as host:        # + agents, an admin, an outsider, the package, sudo
        host.agentctl(host.admin, "a", "tasks", "--json")      # agentctl as the admin → real sudo → helper
        host.run_as(host.agents["a"].user, ["cat", …])         # anything as an agent

RealHost builds what the module declares (modules/os/agents/users.nix, config.nix, agentctl.nix,
sudo-rules.nix): users agent-<name> in the agents group (never in the admins group), an admin in the admins
group, an outsider in neither; homes 0750 agent-<name>:<admins>; each agent's config 0440
agent-<name>:<admins>; the host config 0444; the node_exporter textfile directory 1777→1775 root:<agents>;
and the sudo rules rendered from modules/os/agents/sudo-rules.nix (the expression users.nix uses) into
/etc/sudoers.d/ks-test-<suffix>, exactly as NixOS's security/sudo.nix renders `extraRules`.

Agent names get the session suffix (agent "a" is user agent-a<suffix>); `host.agents["a"].name` is the
name agentctl knows. The package runs from a world-readable copy (the checkout may sit under a directory
other users cannot enter) with Debian's /usr/bin/python3. The one difference to a NixOS host: the helper
launcher passes the session's host configuration path to keystone_agents.agentctl.svc.main (the console
script reads /etc/keystone-agents/agentctl.json, which a test must not overwrite).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

REPO = Path(__file__).resolve().parents[2]
SUDO_RULES_NIX = REPO / "modules/os/agents/sudo-rules.nix"
SUDOERS_DIR = Path("/etc/sudoers.d")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
LOCK_RETRIES = 60  # useradd/groupadd of parallel sessions contend for /etc/passwd's lock


def unavailable() -> str | None:
    """Why real users cannot be used here (None: they can)."""
    if os.geteuid() != 0:
        return "real-user tests need root (useradd, runuser, sudoers.d)"
    for tool in ("useradd", "userdel", "groupadd", "groupdel", "runuser", "sudo", "visudo"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-system-deps installs sudo)"
    if not SUDOERS_DIR.is_dir():
        return f"{SUDOERS_DIR} does not exist (is sudo installed?)"
    return None


def _admin(argv: list[str]) -> None:
    """Run a user-database command, retrying while another session holds the lock."""
    for attempt in range(LOCK_RETRIES):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if result.returncode == 0:
            return
        if "lock" not in result.stderr.lower() and "try again" not in result.stderr.lower():
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
        time.sleep(0.1 + 0.05 * attempt)
    raise RuntimeError(f"{' '.join(argv)}: the user database stayed locked")


@dataclass(frozen=True)
class RealUser:
    name: str
    uid: int
    home: Path
    group: str


@dataclass
class RealUsers:
    """Users and groups named ks<suffix>-<base> (agent-<base><suffix> for agents), removed on exit."""

    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    root: Path | None = None
    users: list[RealUser] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def __enter__(self) -> "RealUsers":
        reason = unavailable()
        if reason:
            raise RuntimeError(reason)
        if self.root is None:
            self.root = Path(f"/tmp/ks-realhost-{self.suffix}")
        self.root.mkdir(mode=0o755)
        self.root.chmod(0o755)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def group_name(self, base: str) -> str:
        return f"ks{self.suffix}-{base}"

    def add_group(self, base: str) -> str:
        name = self.group_name(base)
        _admin(["groupadd", name])
        self.groups.append(name)
        return name

    def add_user(self, name: str, group: str, extra_groups: Sequence[str] = (), home_mode: int = 0o750,
                 home_group: str | None = None) -> RealUser:
        """A user with a locked password, primary group `group`, a home under the session root owned by the
        user and `home_group` (default: its primary group) with `home_mode`."""
        assert self.root is not None, "use RealUsers as a context manager"
        home = self.root / "home" / name
        home.parent.mkdir(mode=0o755, exist_ok=True)
        argv = ["useradd", "-M", "-N", "-g", group, "-d", str(home), "-s", "/bin/bash"]
        if extra_groups:
            argv += ["-G", ",".join(extra_groups)]
        _admin(argv + [name])
        import pwd

        entry = pwd.getpwnam(name)
        user = RealUser(name, entry.pw_uid, home, group)
        self.users.append(user)
        home.mkdir(mode=home_mode)
        import grp

        os.chown(home, entry.pw_uid, grp.getgrnam(home_group or group).gr_gid)
        home.chmod(home_mode)
        return user

    def run_as(self, user: RealUser | str, argv: Sequence[str], env: dict[str, str] | None = None,
               input: str | None = None, timeout: float = 120, cwd: str | os.PathLike | None = None,
               ) -> subprocess.CompletedProcess:
        """argv as `user` (runuser: real uid, gid and supplementary groups), with exactly `env` (runuser sets
        HOME, SHELL, USER and LOGNAME)."""
        name = user.name if isinstance(user, RealUser) else user
        env = dict(env if env is not None else {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"})
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"  # found with our PATH, not the one given to argv
        return subprocess.run([runuser, "-u", name, "--", *argv], env=env, input=input if input is not None else "",
                              capture_output=True, text=True, timeout=timeout, cwd=cwd or "/")

    def close(self) -> None:
        for user in reversed(self.users):
            _kill_processes_of(user.uid)
            subprocess.run(["userdel", user.name], capture_output=True, timeout=60)
        for group in reversed(self.groups):
            subprocess.run(["groupdel", group], capture_output=True, timeout=60)
        self.users.clear()
        self.groups.clear()
        if self.root is not None and self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)


def _kill_processes_of(uid: int) -> None:
    """End what a test user left running (by pid, found in /proc)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    os.kill(int(entry.name), 9)
            except (OSError, ProcessLookupError):
                pass


# ------------------------------------------------------------------ the package, readable by every user


def package_env(root: Path) -> Path:
    """A Python environment under `root` that every user can run: Debian's python3 with a hard-linked copy of
    this checkout's site-packages and package (the checkout itself may not be reachable for other users).
    Returns its bin directory, holding keystone-agent and agentctl."""
    venv = root / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site_src = Path(sysconfig.get_paths()["purelib"])
    site = root / "site-packages"
    _link_tree(site_src, site, skip={"keystone_agents", "_editable_impl_keystone_agents.pth"})
    _link_tree(REPO / "python/keystone_agents", site / "keystone_agents", skip={"__pycache__"})
    _link_tree(REPO / "templates", site / "keystone_agents/templates", skip=set())
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (venv / "lib" / version / "site-packages" / "keystone-realhost.pth").write_text(
        f"import site; site.addsitedir({str(site)!r})\n")
    bin_dir = venv / "bin"
    for script, target in (("keystone-agent", "keystone_agents.cli.agent"), ("agentctl", "keystone_agents.cli.ctl")):
        launcher(bin_dir / script, venv / "bin/python", f"from {target} import main\nsys.exit(main())")
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    return bin_dir


def _link_tree(src: Path, dst: Path, skip: set[str]) -> None:
    shutil.copytree(src, dst, copy_function=_link_or_copy, dirs_exist_ok=True,
                    ignore=lambda _d, names: [n for n in names if n in skip or n == "__pycache__"])


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    if os.stat(dst).st_mode & 0o444 != 0o444:
        shutil.copy2(src, dst + ".tmp")
        os.replace(dst + ".tmp", dst)
        os.chmod(dst, os.stat(dst).st_mode | 0o444)


def launcher(path: Path, python: Path, body: str) -> Path:
    path.write_text(f"#!{python}\nimport sys\n{body}\n")
    path.chmod(0o755)
    return path


# ------------------------------------------------------------------ sudo rules: the module's expression


def module_sudo_rules(helper: str, systemctl: str, agents: list[dict], group: str = "agent-admins") -> list[dict]:
    """modules/os/agents/sudo-rules.nix evaluated by nix-instantiate (no nixpkgs needed): the extraRules
    users.nix sets. agents: [{"user": …, "systemUnits": […]}]."""
    from tests.nix import nixeval

    result = nixeval.run_nix([
        "--eval", "--strict", "--json", str(SUDO_RULES_NIX),
        "--argstr", "helper", helper, "--argstr", "systemctl", systemctl, "--argstr", "group", group,
        "--arg", "agents", _nix_value(agents),
    ])
    if result.returncode != 0:
        raise RuntimeError(f"nix-instantiate {SUDO_RULES_NIX}: {result.stderr.strip()}")
    return json.loads(result.stdout)


def _nix_value(value) -> str:
    if isinstance(value, dict):
        return "{ " + " ".join(f"{json.dumps(k)} = {_nix_value(v)};" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[ " + " ".join(_nix_value(v) for v in value) + " ]"
    return json.dumps(value)  # strings (JSON escapes are Nix escapes for the characters used here), ints, bools


def render_sudoers(rules: Iterable[dict]) -> str:
    """extraRules as NixOS's nixos/modules/security/sudo.nix writes them into /etc/sudoers:
    `<user|%group>\\t<host>=(<runAs>)\\t<OPT:…: command>, …` (rules without commands are skipped)."""
    def who(value, group: bool) -> str:
        if isinstance(value, int):
            return f"%#{value}" if group else f"#{value}"
        return f"%{value}" if group else value

    def command(entry) -> str:
        if isinstance(entry, str):
            return entry
        options = entry.get("options", [])
        return ("".join(f"{o}:" for o in options) + " " if options else " ") + entry["command"]

    lines = []
    for rule in rules:
        commands = rule.get("commands", [])
        if not commands:
            continue
        spec = f"{rule.get('host', 'ALL')}=({rule.get('runAs', 'ALL:ALL')})\t" + ", ".join(command(c) for c in commands)
        lines += [f"{who(u, False)}\t{spec}" for u in rule.get("users", [])]
        lines += [f"{who(g, True)}\t{spec}" for g in rule.get("groups", [])]
    return "\n".join(lines) + "\n"


def install_sudoers(name: str, text: str) -> Path:
    """Check `text` with visudo and install it as /etc/sudoers.d/<name> (0440 root)."""
    path = SUDOERS_DIR / name
    staging = SUDOERS_DIR.parent / f".{name}.tmp"  # sudo ignores files in sudoers.d whose names contain a '.'
    staging.write_text(text)
    staging.chmod(0o440)
    check = subprocess.run(["visudo", "-cf", str(staging)], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        staging.unlink()
        raise RuntimeError(f"visudo rejected the rules: {check.stdout}{check.stderr}\n{text}")
    os.replace(staging, path)
    return path


# ------------------------------------------------------------------ a host as the NixOS module lays it out


@dataclass(frozen=True)
class RealAgent:
    name: str          # the name agentctl knows (with the session suffix)
    user: RealUser
    config_path: Path
    system_units: tuple[str, ...]

    @property
    def home(self) -> Path:
        return self.user.home

    @property
    def state_dir(self) -> Path:
        return self.home / ".local/state/agent-task-loop"


@dataclass
class RealHost:
    users: RealUsers
    bin: Path
    helper: Path
    host_config: Path
    sudoers: Path
    agents_group: str
    admins_group: str
    admin: RealUser
    outsider: RealUser
    agents: dict[str, RealAgent]
    textfile_dir: Path
    fakebin: Path
    systemctl: str

    @property
    def root(self) -> Path:
        assert self.users.root is not None
        return self.users.root

    @classmethod
    def create(cls, agent_names: Sequence[str] = ("a", "b"), system_units: bool = True) -> "RealHost":
        users = RealUsers().__enter__()
        try:
            return cls._build(users, agent_names, system_units)
        except BaseException:
            users.close()
            raise

    @classmethod
    def _build(cls, users: RealUsers, agent_names: Sequence[str], system_units: bool) -> "RealHost":
        root = users.root
        assert root is not None
        bin_dir = package_env(root)
        python = bin_dir / "python"
        host_config = root / "etc/agentctl.json"
        helper = launcher(bin_dir / "keystone-agent-svc", python,
                          "from pathlib import Path\nfrom keystone_agents.agentctl.svc import main\n"
                          f"sys.exit(main(host_config=Path({str(host_config)!r})))")
        fakebin = root / "fakebin"
        _link_tree(REPO / "tests/fakebin", fakebin, skip=set())
        for path in [fakebin, *fakebin.iterdir()]:
            path.chmod(0o755)

        agents_group = users.add_group("agents")
        admins_group = users.add_group("admins")
        admin = users.add_user(users.group_name("admin"), admins_group)
        outsider = users.add_user(users.group_name("out"), users.add_group("out"))
        textfile_dir = root / "textfiles"
        textfile_dir.mkdir()
        import grp

        os.chown(textfile_dir, 0, grp.getgrnam(agents_group).gr_gid)
        textfile_dir.chmod(0o1775)
        (root / "etc/agents").mkdir(parents=True)
        systemctl = shutil.which("systemctl") or "/usr/bin/systemctl"

        agents: dict[str, RealAgent] = {}
        for base in agent_names:
            name = f"{base}{users.suffix}"
            user = users.add_user(f"agent-{name}", agents_group, home_group=admins_group)
            units = (f"agent-{name}-ssh-agent", f"agent-{name}-labwc") if system_units else ()
            config_path = root / "etc/agents" / f"{name}.json"
            config_path.write_text(json.dumps({
                "agentName": name,
                "notesDir": str(user.home / "notes"),
                "defaults": {"provider": "claude"},
                "killGraceSeconds": 0.5,
                "textfileDir": str(textfile_dir),
                "environment": {"FAKE_BIN_LOG": str(user.home / "fake-calls.jsonl")},
            }, indent=2))
            os.chown(config_path, user.uid, grp.getgrnam(admins_group).gr_gid)
            config_path.chmod(0o440)
            agents[base] = RealAgent(name, user, config_path, units)

        path = f"{bin_dir}:{fakebin}:{SYSTEM_PATH}"
        host_config.write_text(json.dumps({
            "version": 1,
            "hostName": "realhost",
            "systemctl": systemctl,
            "agents": [{
                "name": agent.name, "user": agent.user.name, "uid": agent.user.uid, "home": str(agent.home),
                "notesDir": str(agent.home / "notes"), "configPath": str(agent.config_path),
                "helper": str(helper), "systemUnits": list(agent.system_units), "path": path,
                "desktop": False,
            } for agent in agents.values()],
        }, indent=2))
        host_config.chmod(0o444)

        rules = module_sudo_rules(str(helper), systemctl,
                                  [{"user": a.user.name, "systemUnits": list(a.system_units)} for a in agents.values()],
                                  group=admins_group)
        sudoers = install_sudoers(f"ks-test-{users.suffix}", render_sudoers(rules))
        host = cls(users, bin_dir, helper, host_config, sudoers, agents_group, admins_group, admin, outsider,
                   agents, textfile_dir, fakebin, systemctl)
        for agent in agents.values():  # the agent scaffolds its own space, so every file is its own
            result = host.run_as(agent.user, [str(bin_dir / "keystone-agent"), "init", str(agent.home),
                                              "--name", agent.name])
            if result.returncode != 0:
                raise RuntimeError(f"keystone-agent init as {agent.user.name}: {result.stderr}")
        return host

    def __enter__(self) -> "RealHost":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sudoers.unlink()
        except FileNotFoundError:
            pass
        self.users.close()

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": f"{self.bin}:{SYSTEM_PATH}", "LANG": "C.UTF-8", "AGENTCTL_CONFIG": str(self.host_config),
                **extra}

    def run_as(self, user: RealUser | str, argv: Sequence[str], env: dict[str, str] | None = None,
               **kwargs) -> subprocess.CompletedProcess:
        return self.users.run_as(user, argv, env=env if env is not None else self.env(), **kwargs)

    def agentctl(self, user: RealUser | str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """The installed agentctl as `user` (the host configuration through $AGENTCTL_CONFIG)."""
        return self.run_as(user, [str(self.bin / "agentctl"), *args], **kwargs)

    def sudo_as(self, user: RealUser | str, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        """`sudo -n ARGV…` as `user`: what sudo itself allows or denies."""
        return self.run_as(user, ["sudo", "-n", *argv], **kwargs)
