# Sourced by the setup scripts: installs Debian packages with apt-get, as root directly or
# through sudo, without questions.

as_root() {
  if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi
}

# apt_install PACKAGE...: updates the package lists and installs the packages named.
apt_install() {
  as_root apt-get update -q >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}
