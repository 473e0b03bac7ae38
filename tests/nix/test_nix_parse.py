"""Every .nix file of the repository parses (nix-instantiate --parse), and flake.lock pins nothing invented."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.nix import nixeval

NIX_FILES = sorted(
    p for p in nixeval.REPO.rglob("*.nix")
    if not any(part in (".git", ".venv", "node_modules") for part in p.relative_to(nixeval.REPO).parts)
)


def test_the_repository_has_the_module_and_the_flake():
    names = {str(p.relative_to(nixeval.REPO)) for p in NIX_FILES}
    assert {"flake.nix", "modules/os/agents/default.nix", "nix/package.nix", "tests/nix/eval.nix"} <= names


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: str(p.relative_to(nixeval.REPO)))
def test_nix_file_parses(nix, path):
    result = nixeval.run_nix(["--parse", str(path)])
    assert result.returncode == 0, f"{path}: {result.stderr}"


def test_parse_errors_are_reported(nix, tmp_path):
    broken = tmp_path / "broken.nix"
    broken.write_text("{ a = 1; b = ; }\n")
    result = nixeval.run_nix(["--parse", str(broken)])
    assert result.returncode != 0 and "syntax error" in result.stderr


def test_flake_lock_is_valid_and_pins_nothing_invented():
    lock = json.loads((nixeval.REPO / "flake.lock").read_text())
    assert lock["version"] == 7 and lock["root"] in lock["nodes"]
    root_inputs = lock["nodes"][lock["root"]].get("inputs", {})
    for name, node in lock["nodes"].items():
        if name == lock["root"]:
            continue
        locked = node["locked"]  # a pinned input must carry a real revision and NAR hash
        assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"]) and re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"])
    # every input flake.nix declares is pinned; nixpkgs is pinned to a real nixos-unstable revision
    # (2024-12-05, rev and NAR hash as published by nixpkgs' own lock updates); consumers usually `follows`
    flake = (nixeval.REPO / "flake.nix").read_text()
    assert 'inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable"' in flake
    assert root_inputs == {"nixpkgs": "nixpkgs"}
    nixpkgs = lock["nodes"]["nixpkgs"]
    assert nixpkgs["original"] == {"owner": "NixOS", "ref": "nixos-unstable", "repo": "nixpkgs", "type": "github"}
    assert nixpkgs["locked"]["rev"] == "929116e316068c7318c54eb4d827f7d9756d5e9c"


def test_flake_outputs_evaluate_to_the_documented_attributes(nix):
    # evaluate flake.nix's outputs function with a stand-in nixpkgs input: the attribute names are the contract
    expr = f"""
      let
        flake = import {nixeval.REPO}/flake.nix;
        lib = {{ genAttrs = names: f: builtins.listToAttrs (map (n: {{ name = n; value = f n; }}) names); }};
        nixpkgs = {{ inherit lib; legacyPackages = {{ }}; }};
        self = flake.outputs {{ inherit self nixpkgs; }};
      in {{
        inputs = builtins.attrNames flake.inputs;
        outputs = builtins.attrNames self;
        modules = builtins.attrNames self.nixosModules;
        module = toString self.nixosModules.default;
        systems = builtins.attrNames self.packages;
      }}
    """
    result = nixeval.run_nix(["--eval", "--strict", "--json", "--expr", expr])
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["inputs"] == ["nixpkgs"]
    assert {"nixosModules", "packages", "checks", "overlays"} <= set(data["outputs"])
    assert "default" in data["modules"] and data["module"].endswith("/modules/os/agents")
    assert data["systems"] == ["aarch64-linux", "x86_64-linux"]
