# Sourced by the bench scripts (not run on its own).

# need TOOL [PACKAGE]: installs PACKAGE (default: TOOL) from Debian when TOOL
# is not on the PATH.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    local package="${2:-$1}"
    echo "installing $package (apt-get install $package)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package") >/dev/null
}
