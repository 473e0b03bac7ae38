# The keystone-agents Python package, built from the same pyproject.toml pip uses: name, version and runtime
# dependencies are read from it, so the Nix build cannot drift from the wheel.
{ lib, python3Packages }:
let
  pyproject = lib.importTOML ../pyproject.toml;
  # "ruamel.yaml>=0.18" -> "ruamel-yaml" (nixpkgs spells Python distributions normalized, PEP 503)
  attrOf = requirement:
    let name = builtins.head (builtins.match "[[:space:]]*([A-Za-z0-9][A-Za-z0-9._-]*).*" requirement);
    in lib.toLower (builtins.replaceStrings [ "." "_" ] [ "-" "-" ] name);
  dependencyNames = map attrOf pyproject.project.dependencies;
in
python3Packages.buildPythonApplication {
  pname = pyproject.project.name;
  inherit (pyproject.project) version;
  pyproject = true;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [ ../pyproject.toml ../README.md ../python ../templates ];
  };

  build-system = [ python3Packages.hatchling ];
  dependencies = map (name: python3Packages.${name}) dependencyNames;

  # the test suite starts real servers (IMAP, CalDAV, SSH, PostgreSQL, ...); it runs in CI, not in the build
  doCheck = false;
  pythonImportsCheck = [ "keystone_agents" "keystone_agents.cli.agent" "keystone_agents.cli.ctl" ];

  passthru = { inherit dependencyNames; };

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.mit;
    mainProgram = "keystone-agent";
    platforms = lib.platforms.linux;
  };
}
