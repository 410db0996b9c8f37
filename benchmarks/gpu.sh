#!/usr/bin/env bash
# Run every benchmark in benchmarks/ on CUDA (--device cuda) and print their RESULT lines; without a CUDA GPU,
# print one line saying so and exit 0.
#
#   benchmarks/gpu.sh                         # the default model (gemma3-270m)
#   benchmarks/gpu.sh --model smollm2-135m    # arguments go to every script
#
# PYTHON chooses the interpreter (default: .venv/bin/python if it exists, else python). The exit status is that of
# the first script that failed (0 when all ran); a RESULT below its target does not fail the run.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi

if [[ "$("$PYTHON" -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null)" != "True" ]]; then
  echo "no CUDA GPU present (torch.cuda.is_available() is not True with $PYTHON): skipping the GPU benchmarks"
  exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
results=""
for script in benchmarks/*.py; do
  echo "== $script --device cuda $*"
  "$PYTHON" "$script" --device cuda "$@" 2>&1 | tee "$log"
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "!! $script failed (exit $rc)"
    [[ $status -eq 0 ]] && status=$rc
  fi
  results+=$(grep '^RESULT ' "$log" | sed "s|^|$(basename "$script" .py): |")$'\n'
done
echo "== RESULT lines (--device cuda)"
printf '%s' "$results" | grep -v '^$'
exit $status
