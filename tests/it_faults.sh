#!/bin/bash
# The fast subset of the fault matrix (the "quick" lines of
# tests/faults/cases.txt): a fault injected at a chosen record of a real
# migration between two VMM processes (SIGKILL, link cut, stall, a flipped
# byte, out of memory, SIGSTOP), the outcome judged from outside (where the
# guest runs, `migr verify` there, exit codes, messages, nothing left
# hanging). The whole matrix: make test-faults (tests/faults/matrix.py).
set -u
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
exec python3 "$(dirname "$0")/faults/matrix.py" --quick
