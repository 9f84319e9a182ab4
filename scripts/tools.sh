# Sourced by scripts/test, scripts/demo and .ci/run: installs the tools that build offramp's
# plugins (idempotent; each is skipped when already in place):
#   - the wasm32-wasip2 Rust target (Rust plugins)
#   - componentize-py, in target/tools/venv (Python plugins)
#   - componentize-js, from plugins/js/package-lock.json, in target/tools/node (JavaScript plugins)
# and exports COMPONENTIZE_PY and COMPONENTIZE_JS, which runner/build.rs uses.
COMPONENTIZE_PY_VERSION=0.25.1

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "installing the wasm32-wasip2 Rust target" >&2
    rustup target add wasm32-wasip2 >&2
fi

venv="$PWD/target/tools/venv"
if [ ! -x "$venv/bin/componentize-py" ] || ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -q "$COMPONENTIZE_PY_VERSION"; then
    echo "installing componentize-py $COMPONENTIZE_PY_VERSION into target/tools/venv" >&2
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION" >&2
fi
export COMPONENTIZE_PY="$venv/bin/componentize-py"

node_dir="$PWD/target/tools/node"
if ! cmp -s plugins/js/package-lock.json "$node_dir/package-lock.json" || [ ! -x "$node_dir/node_modules/.bin/componentize-js" ]; then
    echo "installing componentize-js (plugins/js/package-lock.json) into target/tools/node" >&2
    mkdir -p "$node_dir"
    cp plugins/js/package.json plugins/js/package-lock.json "$node_dir/"
    (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
export COMPONENTIZE_JS="$node_dir/node_modules/.bin/componentize-js"
