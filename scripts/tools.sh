# Sourced by scripts/test, scripts/demo and .ci/run: installs the tools that build offramp's
# plugins (idempotent; each is skipped when already in place):
#   - the wasm32-wasip2 Rust target (Rust plugins)
#   - componentize-py, in target/tools/venv (Python plugins)
#   - componentize-js, from plugins/js/package-lock.json, in target/tools/node (JavaScript plugins)
# and exports COMPONENTIZE_PY and COMPONENTIZE_JS, which runner/build.rs uses.
COMPONENTIZE_PY_VERSION=0.25.1
# Wherever it is sourced from, it works on the repository it belongs to.
offramp_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "installing the wasm32-wasip2 Rust target" >&2
    rustup target add wasm32-wasip2 >&2
fi

venv="$offramp_root/target/tools/venv"
if [ ! -x "$venv/bin/componentize-py" ] || ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -q "$COMPONENTIZE_PY_VERSION"; then
    echo "installing componentize-py $COMPONENTIZE_PY_VERSION into target/tools/venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
fi
export COMPONENTIZE_PY="$venv/bin/componentize-py"

node_dir="$offramp_root/target/tools/node"
if ! command -v npm >/dev/null 2>&1; then
    echo "npm (Node.js 18 or later) is needed to build the JavaScript plugins; install Node.js and try again" >&2
    return 1 2>/dev/null || exit 1
fi
if ! cmp -s "$offramp_root/plugins/js/package-lock.json" "$node_dir/package-lock.json" || [ ! -f "$node_dir/.installed" ]; then
    echo "installing componentize-js (plugins/js/package-lock.json) into target/tools/node" >&2
    mkdir -p "$node_dir"
    cp "$offramp_root/plugins/js/package.json" "$offramp_root/plugins/js/package-lock.json" "$node_dir/"
    rm -f "$node_dir/.installed"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >&2) && touch "$node_dir/.installed"
fi
export COMPONENTIZE_JS="$node_dir/node_modules/.bin/componentize-js"
