# The docs example (nix/example.nix) as a scenario.
{ imports = [ ../../../nix/example.nix ]; }
