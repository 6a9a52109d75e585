#!/bin/bash
# Settling doubt after COMMIT without an operator (include/migr/settle.h,
# docs/reliability.md "Settling doubt"), on real VMM processes through the
# fault relay (tests/faults/): COMMIT lost (the link cut as it passes: the
# destination never ran the guest, answers ABORTED, the guest resumes on the
# source), DONE lost (cut on its way back: the destination runs it and
# answers COMMITTED, migr send exits 0), the destination refusing COMMIT, and
# neither side reachable (a partition from COMMIT on: the guest stays paused
# on the source and `migr status` says "ownership in doubt: destination
# unreachable since ..."). Each outcome is verified with `migr verify`.
set -u
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
exec python3 "$(dirname "$0")/faults/matrix.py" --case precopy/commit/cut --case precopy/donelost/cut \
    --case precopy/commit/corrupt --case precopy/commit/partition
