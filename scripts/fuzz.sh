#!/usr/bin/env bash
# make fuzz: schemathesis (from PyPI) generates requests from openapi.yaml against a live
# agentd on a throwaway database, and checks every answer against the description: no 5xx,
# the documented status codes, content types and response schemas. The server must still be
# serving afterwards. FUZZ_EXAMPLES sets the cases per operation (default 300).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
agentd=${AGENTD_BIN:?set AGENTD_BIN to the agentd executable}
examples=${FUZZ_EXAMPLES:-300}
venv=${FUZZ_VENV:-$root/.data/fuzz-venv}
schemathesis_version=4.32.5

if [ ! -x "$venv/bin/schemathesis" ]; then
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
            rm -rf "$venv"
            python3 -m venv "$venv"
        else
            echo "python3 -m venv failed; install it with: sudo apt-get install -y python3-venv" >&2
            exit 1
        fi
    fi
    "$venv/bin/pip" install -q "schemathesis==$schemathesis_version"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/agentd-fuzz-XXXXXX")
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

port=$("$root/scripts/pg.sh" free-port)
# The offline model: the fuzz run is about the HTTP surface, not about a model's answers.
# Agents it stores may only name 127.0.0.1 as an MCP server (every other host is refused, at
# configuration and at call time), so generated URLs never send traffic off this machine; a
# throwaway secrets key lets header values be stored.
env -u LLM_BASE_URL HOST=127.0.0.1 PORT="$port" LOG_LEVEL=error OUTBOUND_ALLOWED_HOSTS=127.0.0.1 \
    AGENTD_SECRETS_KEY="$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')" \
    "$agentd" serve >"$work/agentd.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { echo "agentd did not start:" >&2; cat "$work/agentd.log" >&2; exit 1; }
    sleep 0.1
done

status=0
# The event stream is left out: a stream of a task that waits for approval stays open by design
# (follow=1), which a request timeout would report as a failure. Tests/AgentdTests/EventStreamTests
# cover its refusals (404, 422, the auth matrix).
"$venv/bin/schemathesis" run "$root/openapi.yaml" --url "http://127.0.0.1:$port" --exclude-operation-id events \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$examples" --phases examples,coverage,fuzzing --seed "${FUZZ_SEED:-1}" \
    --suppress-health-check all --request-timeout 10 --no-color --generation-database none \
    --report ndjson --report-ndjson-path "$work/events.ndjson" >"$work/schemathesis.out" 2>&1 || status=$?
tail -n 40 "$work/schemathesis.out"

# Requests sent and checks failed, from schemathesis's event log.
counts=$(python3 - "$work/events.ndjson" <<'PY'
import json, sys
requests = failures = 0
for line in open(sys.argv[1]):
    recorder = json.loads(line).get("ScenarioFinished", {}).get("recorder") or {}
    requests += len(recorder.get("interactions", {}))
    failures += sum(check.get("status") == "failure" for checks in recorder.get("checks", {}).values() for check in checks)
print(f"requests sent {requests}; failed checks {failures}")
PY
) || counts="event log unreadable"
alive=yes
curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 || alive=no
echo
echo "fuzz: ${counts}; schemathesis exit ${status}; server still serving: ${alive}"
[ "$alive" = yes ] && [ "$status" -eq 0 ]
