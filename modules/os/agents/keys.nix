# keystone.keys: the registry of SSH public keys, per principal and per host — "agent-atlas" on "myhost" —
# so a key is declared once and referenced wherever it is needed. An agent whose ssh.publicKey is not set
# takes keystone.keys."agent-<name>".hosts.<its host>.publicKey.
{ lib, ... }:
let
  inherit (lib) mkOption types;
in
{
  options.keystone.keys = mkOption {
    type = types.attrsOf (types.submodule {
      options.hosts = mkOption {
        type = types.attrsOf (types.submodule {
          options.publicKey = mkOption {
            type = types.strMatching "(ssh|sk-ssh|ecdsa-sha2)-[^ ]+ [A-Za-z0-9+/=]+.*";
            example = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... agent-atlas";
            description = "The principal's SSH public key on this host (one line of an authorized_keys file).";
          };
        });
        default = { };
        description = "The principal's keys, by host name.";
      };
    });
    default = { };
    example = lib.literalExpression ''{ "agent-atlas".hosts.myhost.publicKey = "ssh-ed25519 AAAAC3... agent-atlas"; }'';
    description = ''
      SSH public keys by principal (a user such as `alice`, or an agent's user `agent-<name>`) and host. An
      agent's ssh.publicKey defaults to keystone.keys."agent-<name>".hosts.<its host>.publicKey.
    '';
  };
}
