#!/usr/bin/env bash
# Create the separate Python 3.10 environment for the Loihi backend (Lava's CPU simulator).
#
# lava-nc 0.10.0 / lava-dl 0.6.0 need Python 3.10 and numpy<2, and lava-dl pins torch 2.3, so they live in
# their own venv without torch (lava-dl is installed with --no-deps; the Loihi backend stubs the torch-only
# modules that lava.lib.dl.netx imports). The main edgekit venv never imports Lava: it runs scripts in this one.
#
#   bash scripts/setup-lava.sh          # idempotent: a complete, current venv makes this a no-op
#
# Environment:
#   EDGEKIT_LAVA_VENV     where the venv goes (default .venv-lava; relative paths are relative to the repo root)
#   PYTHON310             a Python 3.10 interpreter to use (else python3.10 on PATH, else pyenv's 3.10.*)
#   EDGEKIT_REQUIRE_LAVA  1: fail (exit 1) when no Python 3.10 exists; by default that is a note and exit 0,
#                         since the Loihi backend is optional (`edgekit doctor` reports it)
#
# The venv is built under a temporary name next to its final place and renamed into place only after every
# package installed and a smoke import passed; `$VENV/.installed` (the pinned versions) is written last.
set -euo pipefail

# Changing any of these rebuilds the venv (the stamp no longer matches).
LAVA_NC=lava-nc==0.10.0
LAVA_DL=lava-dl==0.6.0
# What lava.lib.dl.netx needs at import time besides lava-nc (which brings numpy, scipy): h5py. Its other
# imports are torch (stubbed by the Loihi backend) and slayer's training extras (matplotlib, cv2, PIL,
# torchvision), which netx reaches only through slayer modules that the same stub replaces.
EXTRA=(h5py "numpy<2")
STAMP="python3.10 $LAVA_NC $LAVA_DL --no-deps ${EXTRA[*]}"

start=$SECONDS
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${EDGEKIT_LAVA_VENV:-.venv-lava}"
[[ "$venv" == /* ]] || venv="$repo/$venv"
venv="$(realpath -ms -- "$venv")"

is_current() { [[ -f "$venv/.installed" && -x "$venv/bin/python" && "$(<"$venv/.installed")" == "$STAMP" ]]; }

if is_current; then
    echo "setup-lava: $venv is up to date ($LAVA_NC, $LAVA_DL)"
    exit 0
fi

# One setup at a time (two `make lava` in parallel would race on the final rename); lock this script itself.
if command -v flock >/dev/null 2>&1; then
    exec 9<"${BASH_SOURCE[0]}"
    flock 9
    if is_current; then
        echo "setup-lava: $venv is up to date ($LAVA_NC, $LAVA_DL)"
        exit 0
    fi
fi

# --- find a Python 3.10 --------------------------------------------------------------------------------------
# Prints the real interpreter path when "$1" runs and is 3.10 (a pyenv shim for an inactive version fails here).
probe() {
    [[ -n "$1" ]] || return 1
    "$1" -c 'import sys; assert sys.version_info[:2] == (3, 10); print(sys.executable)' 2>/dev/null
}

python310=""
if [[ -n "${PYTHON310:-}" ]]; then
    python310="$(probe "$PYTHON310")" || python310=""
fi
if [[ -z "$python310" ]] && command -v python3.10 >/dev/null 2>&1; then
    python310="$(probe "$(command -v python3.10)")" || python310=""
fi
if [[ -z "$python310" ]]; then
    pyenv_root="${PYENV_ROOT:-}"
    if [[ -z "$pyenv_root" ]] && command -v pyenv >/dev/null 2>&1; then
        pyenv_root="$(pyenv root 2>/dev/null)" || pyenv_root=""
    fi
    pyenv_root="${pyenv_root:-$HOME/.pyenv}"
    # Newest 3.10.x first.
    while IFS= read -r cand; do
        python310="$(probe "$cand")" && break || python310=""
    done < <(compgen -G "$pyenv_root/versions/3.10.*/bin/python3.10" | sort -rV || true)
fi
if [[ -z "$python310" ]]; then
    echo "setup-lava: no Python 3.10 found; the Loihi backend stays unavailable (fix: pyenv install 3.10 or set PYTHON310)" >&2
    [[ "${EDGEKIT_REQUIRE_LAVA:-0}" == 1 ]] && exit 1
    exit 0
fi

# --- build under a temporary name ----------------------------------------------------------------------------
mkdir -p "$(dirname "$venv")"
tmp="$(mktemp -d "$venv.partial.XXXXXX")"
chmod 755 "$tmp"
old=""
saved_log="${TMPDIR:-/tmp}/edgekit-setup-lava.install.log"
cleanup() {
    [[ -n "$tmp" && -d "$tmp" ]] && rm -rf "$tmp"
    [[ -n "$old" && -d "$old" ]] && rm -rf "$old"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log="$tmp/install.log"
fail() {
    echo "setup-lava: $1; last lines of the install log (full log: $saved_log):" >&2
    tail -n 25 "$log" >&2 || true
    cp "$log" "$saved_log" 2>/dev/null || true
    exit 1
}

{
    echo "# setup-lava $(date -u +%FT%TZ): $python310 -> $venv"
    echo "# $STAMP"
} >"$log"
"$python310" -m venv "$tmp" >>"$log" 2>&1 || fail "python -m venv failed"
pip=("$tmp/bin/python" -m pip -q --disable-pip-version-check --no-input)
"${pip[@]}" install "$LAVA_NC" "${EXTRA[@]}" >>"$log" 2>&1 || fail "pip install $LAVA_NC failed"
# --no-deps: lava-dl's declared dependencies include torch 2.3, torchvision, opencv, matplotlib, pytest...
"${pip[@]}" install --no-deps "$LAVA_DL" >>"$log" 2>&1 || fail "pip install --no-deps $LAVA_DL failed"

# The venv's scripts (pip, activate) name the temporary path; point them at the final one before the rename.
grep -rlIF -- "$tmp" "$tmp/bin" 2>/dev/null | while IFS= read -r f; do
    sed -i "s|$tmp|$venv|g" "$f"
done

versions="$("$tmp/bin/python" - 2>>"$log" <<'EOF'
import importlib.metadata as m
import lava.magma.core.run_configs, lava.proc.lif.process  # noqa: E401,F401  (the smoke import)
import numpy
assert int(numpy.__version__.split(".")[0]) < 2, f"numpy {numpy.__version__} installed, Lava needs numpy<2"
print(" ".join(f"{p} {m.version(p)}" for p in ("lava-nc", "lava-dl", "numpy", "h5py", "scipy")))
EOF
)" || fail "smoke import of lava failed"
echo "# smoke import ok: $versions" >>"$log"

# --- swap into place; the stamp goes last ---------------------------------------------------------------------
if [[ -e "$venv" ]]; then
    old="$(mktemp -d "$venv.old.XXXXXX")"
    mv "$venv" "$old/venv"
fi
mv "$tmp" "$venv"
tmp=""
printf '%s\n' "$STAMP" >"$venv/.installed.tmp"
mv "$venv/.installed.tmp" "$venv/.installed"
cleanup
old=""

echo "setup-lava: $versions in $venv (python $("$venv/bin/python" -c 'import platform; print(platform.python_version())'), $((SECONDS - start)) s)"
