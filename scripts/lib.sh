# shellcheck shell=bash
# scripts/lib.sh -- what scripts/test and scripts/run share: finding the
# repository, installing what a fresh Debian 12 machine lacks, and building.
#
# Sourced, not run. Both scripts must work as root on a machine that has
# never seen the project, and must not touch apt at all on one that already
# has everything (CI runs them over and over).

TD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TD_JOBS="${TD_JOBS:-2}"

# Debian packages the build and the tests need. make and libc6-dev are listed
# because packages go in without recommends (gcc only recommends libc6-dev,
# cmake only recommends make). chromium runs the browser end-to-end test of
# the demo editor (client-js/test/browser), driven by npm playwright-core.
# nats-server and libnats-dev: the cluster mode (docs/CLUSTER.md); its tests
# start their own JetStream servers.
TD_DEB_PACKAGES=(
    cmake make gcc libc6-dev pkg-config
    libwebsockets-dev libwebsockets-evlib-ev libev-dev
    librocksdb-dev libsodium-dev libcjson-dev zlib1g-dev
    libcmocka-dev
    clang lld libclang-rt-14-dev wasi-libc libclang-rt-14-dev-wasm32
    chromium
    nats-server libnats-dev
)

td_log() { printf '==> %s\n' "$*" >&2; }

td_pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# Does client-js/package.json declare any npm dependency? (False while node
# is missing; td_install_debs asks again once nodejs is in.)
td_js_has_deps() {
    local pj="$TD_ROOT/client-js/package.json"
    [[ -f "$pj" ]] && command -v node >/dev/null 2>&1 || return 1
    node -e '
        const p = require(process.argv[1]);
        const n = Object.keys({ ...p.dependencies, ...p.devDependencies }).length;
        process.exit(n > 0 ? 0 : 1);' "$pj"
}

# Installs the missing Debian packages, in one apt-get run. node and npm are
# checked as commands, not packages: node may come from elsewhere (e.g.
# NodeSource, whose nodejs bundles npm and conflicts with Debian's npm).
td_install_debs() {
    local missing=() p
    if ! command -v dpkg-query >/dev/null 2>&1; then
        td_log "not a Debian system: skipping package installation"
        return 0
    fi
    for p in "${TD_DEB_PACKAGES[@]}"; do
        td_pkg_installed "$p" || missing+=("$p")
    done
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    if td_js_has_deps && ! command -v npm >/dev/null 2>&1; then
        missing+=(npm)
    fi
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    td_log "installing: ${missing[*]}"
    local sudo=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            td_log "missing packages (${missing[*]}) and not root: install them and re-run"
            return 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    # node was missing, so package.json could not be read until now.
    if td_js_has_deps && ! command -v npm >/dev/null 2>&1; then
        "${sudo[@]}" apt-get install -y -q --no-install-recommends npm </dev/null
    fi
}

# npm packages of client-js, only if it declares any and they are not
# installed for the current lockfile.
td_install_npm() {
    td_js_has_deps || return 0
    local dir="$TD_ROOT/client-js"
    if [[ -f "$dir/package-lock.json" ]]; then
        if [[ -f "$dir/node_modules/.package-lock.json" &&
              "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]]; then
            return 0
        fi
        td_log "npm ci in client-js/"
        (cd "$dir" && npm ci --no-audit --no-fund </dev/null)
    else
        td_log "npm install in client-js/"
        (cd "$dir" && npm install --no-audit --no-fund </dev/null)
    fi
}

td_install_deps() {
    td_install_debs
    td_install_npm
}

# td_configure DIR [cmake args...]
td_configure() {
    local dir="$1"
    shift
    td_log "configure $dir $*"
    cmake -S "$TD_ROOT" -B "$dir" "$@"
}

# td_compile DIR [targets...]: builds; with TD_KEEP_GOING=1 it builds all it
# can past a failure (so the tests of the other layers still run), and still
# returns the failure.
td_compile() {
    local dir="$1" args
    shift
    args=(--build "$dir" -j "$TD_JOBS")
    (($# == 0)) || args+=(--target "$@")
    if [[ "${TD_KEEP_GOING:-0}" == 1 ]]; then
        if grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja' "$dir/CMakeCache.txt" 2>/dev/null; then
            args+=(-- -k 0)
        else
            args+=(-- -k)
        fi
    fi
    td_log "build $dir${*:+ (targets: $*)}"
    cmake "${args[@]}"
}

# td_build DIR [cmake args...]: configure and build everything.
td_build() {
    td_configure "$@" && td_compile "$1"
}
