{
  description = "payrail: a payment processing appliance of statically linked Rust services";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

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
      };

    # `nixos-rebuild switch --flake .#vm1` on the state host, `.#vm2` on the app host.
    # `/etc/nixos/hardware-configuration.nix` is the machine's own (nixos-generate-config).
    nixosConfigurations = let
      host = file:
        lib.nixosSystem {
          inherit system;
          modules = [
            self.nixosModules.default
            file
            /etc/nixos/hardware-configuration.nix
            {system.stateVersion = "25.11";}
          ];
        };
    in {
      vm1 = host ./vm1.nix;
      vm2 = host ./vm2.nix;
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
