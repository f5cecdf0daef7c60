# services.payrail.pg-mock: the payment gateway stand-in.
import ./service.nix {
  name = "pg-mock";
  description = "the payment gateway stand-in";
  defaultPort = 8090;
}
