"""Run nix-instantiate on the evaluation harness in this directory, without a Nix daemon or a writable store.

Also renders the option reference of docs/nixos.md from the module's own option declarations:
`python tests/nix/nixeval.py --write-docs` (what scripts/gen-nixos-docs runs) rewrites the generated block.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DOCS = REPO / "docs/nixos.md"
BEGIN = "<!-- BEGIN GENERATED: nixos-options -->"
END = "<!-- END GENERATED: nixos-options -->"


def nix_instantiate() -> str | None:
    return shutil.which("nix-instantiate")


def nixpkgs_lib() -> str | None:
    """nixpkgs' lib directory (a checkout of nixpkgs/lib or nix-community/nixpkgs.lib's lib) from NIXPKGS_LIB."""
    value = os.environ.get("NIXPKGS_LIB")
    if not value:
        return None
    path = Path(value)
    if (path / "lib" / "default.nix").exists() and not (path / "default.nix").exists():
        path = path / "lib"
    return str(path)


def nix_env(state: Path) -> dict[str, str]:
    """An environment in which nix-instantiate evaluates as any user: private state/log/config dirs, no daemon."""
    env = dict(os.environ)
    env.update(
        NIX_STATE_DIR=str(state / "state"),
        NIX_LOG_DIR=str(state / "log"),
        NIX_CONF_DIR=str(state / "conf"),
        NIX_REMOTE="",
        HOME=str(state),
        XDG_CACHE_HOME=str(state / "cache"),
    )
    (state / "conf").mkdir(parents=True, exist_ok=True)
    # the evaluation needs no builds; the dummy store refuses any attempt to write to the store
    (state / "conf" / "nix.conf").write_text("build-users-group =\nstore = dummy://\nsandbox = false\n")
    return env


def run_nix(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    exe = nix_instantiate()
    if exe is None:
        raise RuntimeError("nix-instantiate is not installed (Debian: nix-bin)")
    with tempfile.TemporaryDirectory(prefix="nix-eval-") as state:
        return subprocess.run([exe, *args], env=nix_env(Path(state)), capture_output=True, text=True, timeout=timeout)


def evaluate(file: Path, **args: str | Path) -> object:
    """`nix-instantiate --eval --strict --json FILE` with --argstr for str values and --arg for paths."""
    argv = ["--eval", "--strict", "--json", str(file)]
    for name, value in args.items():
        argv += (["--arg", name, str(value)] if isinstance(value, Path) else ["--argstr", name, value])
    result = run_nix(argv)
    if result.returncode != 0:
        raise NixError(result.stderr)
    return json.loads(result.stdout)


class NixError(Exception):
    """An evaluation error; the message is nix's stderr (where `throw` and type errors are reported)."""


def module_options(lib_dir: str) -> list[dict]:
    return evaluate(HERE / "options.nix", nixpkgsLib=lib_dir)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_options(options: list[dict]) -> str:
    lines = [BEGIN, "", "| Option | Type | Default | Description |", "|---|---|---|---|"]
    for option in sorted(options, key=lambda o: o["name"]):
        default = option["default"]
        default_text = "*required*" if default is None else f"`{_cell(default)}`"
        lines.append(
            f"| `{option['name']}` | {_cell(option['type'])} | {default_text} | {_cell(option['description'])} |"
        )
    lines += ["", END]
    return "\n".join(lines)


def regenerate_docs(lib_dir: str, check: bool = False) -> bool:
    """Rewrite (or, with check, compare) the generated block of docs/nixos.md. Returns True when it was current."""
    text = DOCS.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    block = render_options(module_options(lib_dir))
    current = text[start:end] == block
    if not current and not check:
        DOCS.write_text(text[:start] + block + text[end:])
    return current


if __name__ == "__main__":
    lib_dir = nixpkgs_lib()
    if lib_dir is None:
        sys.exit("NIXPKGS_LIB is not set: point it at nixpkgs' lib directory (see docs/nixos.md, Tests)")
    if sys.argv[1:] == ["--write-docs"]:
        print("docs/nixos.md: " + ("unchanged" if regenerate_docs(lib_dir) else "regenerated"))
        sys.path.insert(0, str(REPO))
        from tests.support import units

        print(f"{units.SNAPSHOT.relative_to(REPO)}: " + ("unchanged" if units.write_snapshot(lib_dir) else "regenerated"))
    else:
        sys.exit("usage: nixeval.py --write-docs")
