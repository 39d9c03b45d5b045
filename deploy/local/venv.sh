#!/usr/bin/env bash
# Create .venv at the repo root and install the project with its dev extras.
# Idempotent: a stamp file skips the install when pyproject/constraints are unchanged.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
pick_python() {
  for c in python3.12 python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1; then
      v=$("$c" -c 'import sys; print("%d%02d" % sys.version_info[:2])' 2>/dev/null) || continue
      if [ "$v" -ge 311 ] && [ "$v" -le 312 ]; then echo "$c"; return 0; fi
    fi
  done
  # pyenv installs are not always on PATH under a non-interactive shell.
  for c in "$HOME"/.pyenv/versions/3.1[12].*/bin/python3; do
    [ -x "$c" ] && { echo "$c"; return 0; }
  done
  echo "no Python 3.11 or 3.12 found (bytewax 0.21.1 has wheels only up to 3.12)" >&2
  return 1
}
stamp=.venv/.installed
files=(pyproject.toml)
[ -f constraints.txt ] && files+=(constraints.txt)
want=$(cat "${files[@]}" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  py=$(pick_python)
  echo "==> creating .venv with $py" >&2
  "$py" -m venv .venv
fi
echo "==> installing Python dependencies into .venv (first time takes about a minute)" >&2
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >&2
cons=()
[ -f constraints.txt ] && cons=(-c constraints.txt)
.venv/bin/python -m pip install -q --disable-pip-version-check "${cons[@]}" -e ".[dev]" >&2
echo "$want" > "$stamp"
