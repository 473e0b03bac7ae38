# The keystone-agents Python package, built from the same pyproject.toml pip uses: name, version and runtime
# dependencies are read from it, so the Nix build cannot drift from the wheel.
{ lib, python3Packages, installShellFiles }:
let
  pyproject = lib.importTOML ../pyproject.toml;
  # "ruamel.yaml>=0.18" -> "ruamel-yaml" (nixpkgs spells Python distributions normalized, PEP 503)
  attrOf = requirement:
    let name = builtins.head (builtins.match "[[:space:]]*([A-Za-z0-9][A-Za-z0-9._-]*).*" requirement);
    in lib.toLower (builtins.replaceStrings [ "." "_" ] [ "-" "-" ] name);
  dependencyNames = map attrOf pyproject.project.dependencies;
  # the extras the NixOS package always includes: the PostgreSQL bus backend and `keystone-agent mcp serve`
  extraNames = map attrOf (pyproject.project.optional-dependencies.postgres ++ pyproject.project.optional-dependencies.mcp);
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
  dependencies = map (name: python3Packages.${name}) (dependencyNames ++ extraNames);
  # build-time only: completion scripts and manual pages generated from the click commands
  nativeBuildInputs = [ installShellFiles python3Packages.click-man ];

  postInstall = ''
    export PYTHONPATH="$out/${python3Packages.python.sitePackages}''${PYTHONPATH:+:$PYTHONPATH}"
    for cli in keystone-agent agentctl; do
      for shell in bash zsh fish; do
        "$out/bin/$cli" completion "$shell" > "$cli.$shell"
      done
      installShellCompletion --cmd "$cli" --bash "$cli.bash" --zsh "$cli.zsh" --fish "$cli.fish"
    done
    mkdir -p man
    python3 -m keystone_agents.manpages man
    installManPage man/*.1
  '';

  # the test suite starts real servers (IMAP, CalDAV, SSH, PostgreSQL, ...); it runs in CI, not in the build
  doCheck = false;
  pythonImportsCheck = [ "keystone_agents" "keystone_agents.cli.agent" "keystone_agents.cli.ctl" ];

  passthru = { inherit dependencyNames extraNames; };

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.mit;
    mainProgram = "keystone-agent";
    platforms = lib.platforms.linux;
  };
}
