# Sourced by scripts/test and .ci/run: installs the build and test tools offramp needs.
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
