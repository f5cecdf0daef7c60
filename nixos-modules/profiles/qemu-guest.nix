# A QEMU/KVM guest as the examples (`nixosConfigurations.vm1`/`vm2`) and the NixOS VM
# test run it: GRUB on /dev/vda, the root file system by label, SSH with keys only, and
# an `admin` user in wheel whose keys come from `payrail.guest.adminKeys`. Real machines
# import their own hardware configuration instead (templates/deploy).
#
# The boot loader, file systems and SSH are set only where those options exist: they
# always do on NixOS; the evaluation kit this repo is checked with here
# (../shared/nix-eval) stubs a smaller option surface without them.
{
  config,
  lib,
  options,
  ...
}: let
  cfg = config.payrail.guest;
in {
  options.payrail.guest.adminKeys = lib.mkOption {
    type = lib.types.listOf lib.types.str;
    default = [];
    example = ["ssh-ed25519 AAAAC3Nza... operator@laptop"];
    description = "SSH public keys of the `admin` user (password login is off).";
  };

  config = lib.mkMerge [
    {
      users.users.admin = {
        isNormalUser = true;
        extraGroups = ["wheel"];
        openssh.authorizedKeys.keys = cfg.adminKeys;
      };
    }
    (lib.optionalAttrs (options ? boot.loader.grub.device) {
      boot.loader.grub.device = lib.mkDefault "/dev/vda";
      boot.initrd.availableKernelModules = ["virtio_pci" "virtio_blk" "virtio_scsi" "virtio_net" "ahci" "sr_mod"];
    })
    (lib.optionalAttrs (options ? fileSystems) {
      fileSystems."/" = lib.mkDefault {
        device = "/dev/disk/by-label/nixos";
        fsType = "ext4";
      };
    })
    (lib.optionalAttrs (options ? services.openssh.enable) {
      services.openssh = {
        enable = true;
        settings = {
          PasswordAuthentication = false;
          KbdInteractiveAuthentication = false;
          PermitRootLogin = "no";
        };
      };
    })
    # `admin` has keys and no password, so sudo asks for none.
    (lib.optionalAttrs (options ? security.sudo.wheelNeedsPassword) {
      security.sudo.wheelNeedsPassword = false;
    })
  ];
}
