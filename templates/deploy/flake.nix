# payrail on two NixOS 26.05 machines: `nix flake init -t github:<owner>/payrail`, then
# set the addresses below, copy each machine's hardware-configuration.nix next to this
# file, and `nixos-rebuild switch --flake .#vm1 --target-host root@<vm1>` (then .#vm2).
{
  # Where you keep payrail (a GitHub repository, git+https://..., or path:/...).
  inputs.payrail.url = "github:payrail/payrail";
  inputs.nixpkgs.follows = "payrail/nixpkgs";

  outputs = {
    nixpkgs,
    payrail,
    ...
  }: let
    site = {
      payrail.hosts = {
        vm1Address = "10.0.0.1"; # the state host, as vm2 reaches it
        vm2Address = "10.0.0.2"; # the app host, as vm1 reaches it
        privateNetwork = "10.0.0.0/24";
        # Secrets are plain files (sops-nix, agenix or by hand), see README, Deployment.
        secretsDir = "/run/secrets/payrail";
      };
      services.openssh.enable = true;
      system.stateVersion = "26.05";
    };
    host = role:
      nixpkgs.lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          payrail.nixosModules.${role}
          ./hardware-configuration-${role}.nix
          site
          {networking.hostName = role;}
        ];
      };
  in {
    nixosConfigurations = {
      vm1 = host "vm1";
      vm2 = host "vm2";
    };
  };
}
