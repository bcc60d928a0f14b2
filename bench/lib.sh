# Sourced by the bench scripts (not run on its own).

# need TOOL [PACKAGE]: installs PACKAGE (default: TOOL) from Debian when TOOL
# is not on the PATH.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    local package="${2:-$1}"
    echo "installing $package (apt-get install $package)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package") >/dev/null
}

# wait_for URL: until URL answers (at most 10 s); exits the script if it never does.
wait_for() {
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "server at $1 did not start" >&2
    exit 1
}
