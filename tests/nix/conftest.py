"""Fixtures of the Nix tests: nix-instantiate (Debian's nix-bin) and nixpkgs' lib (NIXPKGS_LIB)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.nix import nixeval


@pytest.fixture(scope="session")
def nix() -> str:
    exe = nixeval.nix_instantiate()
    if exe is None:
        pytest.skip("nix-instantiate not installed (scripts/install-system-deps installs Debian's nix-bin)")
    return exe


@pytest.fixture(scope="session")
def nixpkgs_lib(nix) -> str:
    lib_dir = nixeval.nixpkgs_lib()
    if lib_dir is None:
        pytest.skip("NIXPKGS_LIB is unset: point it at nixpkgs' lib directory to evaluate the module")
    return lib_dir


class Evaluation(dict):
    """What a switch would produce for one scenario (see tests/nix/eval.nix), with JSON files decoded."""

    def etc_json(self, name: str) -> dict:
        return json.loads(self["etc"][name]["text"])

    def agent_config(self, agent: str) -> dict:
        return self.etc_json(f"keystone-agents/agents/{agent}.json")

    def host_config(self) -> dict:
        return self.etc_json("keystone-agents/agentctl.json")


@pytest.fixture
def evaluate(nixpkgs_lib, tmp_path):
    """evaluate(nix_module_text, pkgs_root=None) → Evaluation; the text is a NixOS module (the scenario)."""

    def run(module: str, pkgs_root: Path | None = None) -> Evaluation:
        scenario = tmp_path / f"scenario-{len(list(tmp_path.glob('scenario-*')))}.nix"
        scenario.write_text(module)
        args = {"nixpkgsLib": nixpkgs_lib, "scenario": scenario}
        if pkgs_root is not None:
            args["pkgsRoot"] = str(pkgs_root)
        return Evaluation(nixeval.evaluate(nixeval.HERE / "eval.nix", **args))

    return run
