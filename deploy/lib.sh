# Shared by deploy/run and deploy/test: install Debian packages only when missing.
need() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    if [ -z "${TALLY_APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq
        export TALLY_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_redis() {
    need redis-server || { echo "installing redis-server"; apt_install redis-server; }
}

ensure_cargo() {
    if ! need cargo; then
        [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
    fi
    need cargo || { echo "installing cargo (Debian's)"; apt_install cargo rustc; }
}
