#!/bin/sh
# Reproduce every prototype result (about 30 s on 1 core). Needs the repository's .venv-lava (make lava) (lava-nc 0.10.0, lava-dl 0.6.0).
set -e
cd "$(dirname "$0")"
PY="$(cd ../../.. && pwd)/.venv-lava/bin/python"
for case in "proto:" "v0:--vth 0,0,0" "v1:--vth 1,1,1" "wrap:--wrap" "big:--vth 40,200,2000"; do
  d=${case%%:*}; args=${case#*:}
  echo "== $d $args"
  $PY make_net.py "$d" $args
  $PY -I run_lava.py "$d" 2>/dev/null
  $PY mirror.py "$d"
done
$PY mutations.py
$PY -I reset_test.py proto 5 2>/dev/null
$PY -I filesink_test.py proto 2>/dev/null
$PY -I pitfalls/check_fields.py proto 2>/dev/null | grep -E "^(OK|FAILS)"
