{
  description = "payrail: a payment processing appliance of statically linked Rust services";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs = {
    self,
    nixpkgs,
  }: let
    system = "x86_64-linux";
    pkgs = nixpkgs.legacyPackages.${system};
    inherit (nixpkgs) lib;
    build = pkgs.callPackage ./services/package.nix {src = ./.;};
    payrail = build.packages;
    services = ["ingest" "gateway" "settlement-worker" "refund-worker" "ledger" "pg-mock" "monitoring"];
    # Each service module with its package defaulting to this flake's build.
    withPackage = name: {
      imports = [./nixos-modules/${name}.nix];
      services.payrail.${name}.package = lib.mkDefault self.packages.${system}.${name};
    };
  in {
    packages.${system} = payrail // {default = payrail.payrail;};

    nixosModules =
      lib.genAttrs services withPackage
      // {
        hosts = ./nixos-modules/hosts.nix;
        default = {
          imports = map withPackage services ++ [./nixos-modules/hosts.nix];
        };
        # A whole host: every service module plus that host's placement (vm1.nix, the state
        # host; vm2.nix, the app host). A real machine's flake imports one of these with its
        # own hardware configuration (templates/deploy).
        vm1 = {imports = [self.nixosModules.default ./vm1.nix];};
        vm2 = {imports = [self.nixosModules.default ./vm2.nix];};
        qemu-guest = ./nixos-modules/profiles/qemu-guest.nix;
      };

    # Examples, evaluated purely by `nix flake check`: both hosts as QEMU guests on a
    # 10.0.0.0/24 private network. Real machines: `nix flake init -t <payrail>` (below).
    nixosConfigurations = let
      host = role:
        lib.nixosSystem {
          inherit system;
          modules = [
            self.nixosModules.${role}
            self.nixosModules.qemu-guest
            {
              networking.hostName = role;
              payrail.hosts = {
                vm1Address = "10.0.0.1";
                vm2Address = "10.0.0.2";
                privateNetwork = "10.0.0.0/24";
              };
              system.stateVersion = "26.05";
            }
          ];
        };
    in {
      vm1 = host "vm1";
      vm2 = host "vm2";
    };

    # The flake a real deployment keeps: payrail's host modules, the machine's hardware
    # configuration and its addresses.
    templates.default = {
      path = ./templates/deploy;
      description = "payrail on two NixOS machines (state host vm1, app host vm2)";
    };

    checks.${system} =
      build.checks
      // {
        # The twin of tests/it/two_host.rs: full flow, 1,000 RPS k6, reconciliation.
        two-host = pkgs.testers.runNixOSTest (import ./tests/nixos/two-host.nix {inherit self;});
        # Every binary is statically linked.
        static = pkgs.runCommand "payrail-static-check" {} ''
          for bin in ${payrail.payrail}/bin/*; do
            if ${pkgs.file}/bin/file "$bin" | grep -q "dynamically linked"; then
              echo "$bin is dynamically linked"; exit 1
            fi
          done
          touch $out
        '';
        nix-format = pkgs.runCommand "payrail-nix-format" {} ''
          ${lib.getExe pkgs.alejandra} --check ${./.} && ${lib.getExe pkgs.deadnix} --fail ${./.}
          touch $out
        '';
      };

    devShells.${system}.default = pkgs.mkShell {
      packages = with pkgs; [cargo rustc clippy rustfmt pkg-config mariadb redis k6 alejandra deadnix];
    };

    formatter.${system} = pkgs.alejandra;
  };
}
