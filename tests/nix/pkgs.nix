# A small stand-in for nixpkgs: every package is a fake derivation whose outPath is <root>/<name>, so a test
# can put real (recording) executables there and run the scripts the module generates. Builders keep their
# inputs (text, attrs) for assertions. nix/package.nix is really called, with these stand-ins.
{ lib, root }:
let
  drv = name: attrs: {
    type = "derivation";
    inherit name;
    outPath = "${root}/${name}";
  } // attrs;

  # nixpkgs attribute names of Python distributions the runtime may depend on (PEP 503 normalized).
  # A dependency missing here fails the evaluation test: add it after checking nixpkgs has that attribute.
  pythonNames = [
    "ruamel-yaml" "pyyaml" "jsonschema" "click" "jinja2" "structlog" "prometheus-client" "croniter" "caldav"
    "icalendar" "recurring-ical-events" "vobject" "python-dateutil" "psycopg" "gitpython" "requests" "httpx"
    "imapclient" "aiosmtpd" "tomli" "pydantic" "rich" "tabulate" "pexpect" "platformdirs" "filelock"
    "click-man" "mcp"
  ];

  python3Packages = lib.genAttrs pythonNames (name: drv "python3-${name}" { }) // {
    hatchling = drv "python3-hatchling" { };
    python = { sitePackages = "lib/python3.11/site-packages"; };
    buildPythonApplication = attrs: drv "${attrs.pname}-${attrs.version}" {
      inherit (attrs) pname version;
      dependencies = map (d: d.name) attrs.dependencies;
      buildSystem = map (d: d.name) attrs.build-system;
      nativeBuildInputs = map (d: d.name) (attrs.nativeBuildInputs or [ ]);
      postInstall = attrs.postInstall or "";
      meta = attrs.meta or { };
      passthru = attrs.passthru or { };
    };
  };

  callPackage = fn: args:
    let f = if builtins.isFunction fn then fn else import fn;
    in f (builtins.intersectAttrs (lib.functionArgs f) { inherit lib python3Packages installShellFiles; } // args);

  installShellFiles = drv "installShellFiles" { };

  plain = names: lib.genAttrs names (name: drv name { });
in
plain [ "coreutils" "openssh" "git" "systemd" "labwc" "wayvnc" "wlr-randr" "chromium" "nix" "himalaya" "bitwarden-cli" ]
// {
  inherit lib python3Packages callPackage installShellFiles;
  writeShellScript = name: text: drv name { inherit text; executable = true; };
  writeTextDir = path: text: drv "textdir-${baseNameOf path}" { inherit path text; };
  writeText = name: text: drv name { inherit text; };
  runCommand = name: env: buildCommand: drv name { inherit buildCommand; };
}
