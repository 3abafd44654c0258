#!/usr/bin/env bash
# Reads `swift test` output, prints the tests' verdicts and the CHAOS| lines as a table;
# exits non-zero when a test failed or a scenario lost or duplicated a task.
set -uo pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cat >"$log"
grep -E '^(✔|✘) (Test|Suite)' "$log"
echo
{
    echo "scenario|accepted|completed|lost|duplicated|recovery|notes"
    echo "---|---|---|---|---|---|---"
    grep '^CHAOS|' "$log" | cut -d'|' -f2-
} | column -t -s'|'
failed=0
grep -q '^✘' "$log" && failed=1
grep -q '^✔ Test run' "$log" || failed=1
awk -F'|' '/^CHAOS\|/ && ($5 != 0 || $6 != 0) { bad = 1 } END { exit bad }' "$log" || failed=1
exit $failed
