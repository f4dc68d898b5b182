#!/usr/bin/env bash
# Regenerates the Python code for protos/ into OUT (default: the repository root, package
# `dsop`). Generated modules are never edited by hand; `make check` fails when they are stale.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$root}")
py=${PYTHON:-$root/.venv/bin/python}
bin=$(dirname "$py")
cd "$root/protos"
mapfile -t files < <(find dsop -name '*.proto' | sort)
rm -rf "$out/dsop"
mkdir -p "$out"
# mypy-protobuf names every file it writes on stderr; show stderr only when protoc fails.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$py" -m grpc_tools.protoc -I . \
  --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-mypy="$bin/protoc-gen-mypy" --mypy_out="$out" \
  --plugin=protoc-gen-mypy_grpc="$bin/protoc-gen-mypy_grpc" --mypy_grpc_out="$out" \
  "${files[@]}" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
# Packages need their __init__.py for setuptools and mypy.
find "$out/dsop" -type d -exec sh -c 'for d; do : > "$d/__init__.py"; done' _ {} +
printf '"""Generated from protos/ by scripts/gen_protos.sh. Do not edit."""\n' > "$out/dsop/__init__.py"
: > "$out/dsop/py.typed"
