# Every payrail service, built once from the Cargo workspace as statically linked
# binaries (pkgsStatic: musl, librdkafka built from the rdkafka crate's bundled source and
# linked in). Each service is then exposed as its own package with `mainProgram` set.
{
  lib,
  pkgsStatic,
  rustPlatform,
  clippy,
  pkg-config,
  perl,
  python3,
  runCommand,
  src,
}: let
  version = (lib.importTOML (src + "/Cargo.toml")).workspace.package.version;
  # Only what the Rust build reads, so editing Nix files or docs does not rebuild it.
  source = lib.fileset.toSource {
    root = src;
    fileset = lib.fileset.unions [
      (src + "/Cargo.toml")
      (src + "/Cargo.lock")
      (src + "/.cargo")
      (src + "/clippy.toml")
      (src + "/services")
      (src + "/tests")
    ];
  };
  # The vendored crates may be symlinks into the (read-only) store: rdkafka-sys is
  # replaced by a writable copy, then its shebangs point into the store.
  preBuild = ''
    for crate in $(find "$NIX_BUILD_TOP" -maxdepth 2 -name 'rdkafka-sys-*'); do
      if [ -L "$crate" ]; then
        target=$(readlink -f "$crate")
        rm "$crate"
        cp -r "$target" "$crate"
        chmod -R u+w "$crate"
      fi
      patchShebangs "$crate/librdkafka"
    done
  '';
  workspace = pkgsStatic.rustPlatform.buildRustPackage {
    pname = "payrail";
    inherit version;
    src = source;
    cargoLock.lockFile = src + "/Cargo.lock";
    cargoBuildFlags = map (p: "--package=${p}") services;
    # The bundled librdkafka is built by its own configure script (rdkafka-sys without
    # `cmake-build`, the same Cargo features as `cargo build` outside Nix). The script and
    # the `lds-gen.py` it runs start with `#!/usr/bin/env ...`, and the sandbox has no
    # /usr/bin/env: patch the vendored copy before cargo's build script copies it into
    # OUT_DIR. (The CMake path is no way out at librdkafka 2.12.1: its config.h defines
    # WITH_OAUTHBEARER_OIDC as 0, rdkafka_conf.c tests it with #ifdef and so includes
    # curl/curl.h even without curl.)
    nativeBuildInputs = with pkgsStatic.buildPackages; [pkg-config perl python3];
    inherit preBuild;
    # The tests need MariaDB, Redis and a broker; they run in `checks` and in CI.
    doCheck = false;
    meta = {
      description = "payrail: a payment processing appliance";
      license = lib.licenses.asl20;
      platforms = ["x86_64-linux"];
    };
  };
  # `cargo clippy -D warnings` and the unit tests (those that need no MariaDB, Redis or
  # broker), as checks; the integration tests run in the NixOS test and in CI.
  cargoCheck = name: command:
    rustPlatform.buildRustPackage {
      pname = "payrail-${name}";
      inherit version;
      src = source;
      cargoLock.lockFile = src + "/Cargo.lock";
      nativeBuildInputs = [pkg-config perl python3 clippy];
      inherit preBuild;
      buildPhase = "runHook preBuild; ${command}; runHook postBuild";
      installPhase = "touch $out";
      doCheck = false;
    };
  services = [
    "ingest"
    "gateway"
    "settlement-worker"
    "refund-worker"
    "ledger"
    "pg-mock"
    "monitoring"
    "mcp"
  ];
  one = name:
    runCommand "payrail-${name}-${workspace.version}" {meta.mainProgram = name;} ''
      mkdir -p $out/bin
      ln -s ${workspace}/bin/${name} $out/bin/${name}
    '';
in {
  packages = lib.genAttrs services one // {payrail = workspace;};
  checks = {
    clippy = cargoCheck "clippy" "cargo clippy --release --workspace --all-targets --offline -- -D warnings";
    unit-tests = cargoCheck "unit-tests" "cargo test --release --workspace --lib --bins --offline";
  };
}
