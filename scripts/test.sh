#!/usr/bin/env bash
# The one test command: installs what the tests need on a fresh Debian machine, then runs
# fmt check, clippy (-D warnings), the whole test suite (Rust unit, integration, property
# and doc tests, plus the official Python SDK tests against the real gateway), and a
# check that the release example gateway serves the SDK from its demo upstream.
#
# Usage: bash scripts/test.sh          (CI: .ci/run calls exactly this)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n== %s ==\n' "$*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

step "system packages"
need_apt=()
command -v python3 >/dev/null || need_apt+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v curl >/dev/null || need_apt+=(curl)
# promtool checks the gateway's /metrics (tests/audit_metrics.rs).
command -v promtool >/dev/null || need_apt+=(prometheus)
# A real redis-server on 127.0.0.1 for the rate-limit store tests (started by the tests).
command -v redis-server >/dev/null || need_apt+=(redis-server)
# Tesseract for ai-redact's `ocr` feature (text in images: crates/ai-redact/tests/ocr.rs).
command -v tesseract >/dev/null || need_apt+=(tesseract-ocr tesseract-ocr-eng)
if [ ${#need_apt[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
echo "ok: python3 $(python3 --version 2>&1 | cut -d' ' -f2), $(promtool --version 2>&1 | head -1), $(redis-server --version | cut -d' ' -f1-3), $(tesseract --version 2>&1 | head -1)"

step "python venv with the official SDKs"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt
.venv/bin/python -c 'import anthropic, openai, pytest; print("anthropic", anthropic.__version__, "| openai", openai.__version__, "| pytest", pytest.__version__)'
export AI_GATEWAY_PYTHON="$root/.venv/bin/python"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo deny (licences, bans, sources; advisories need the RustSec database, not reachable here)"
if ! command -v cargo-deny >/dev/null; then
  cargo install --locked --quiet cargo-deny
fi
cargo deny --log-level error check bans licenses sources

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (-D warnings: broken intra-doc links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --workspace --all-features --quiet

step "feature combinations build on their own"
cargo check --locked --quiet --no-default-features
cargo check --locked --quiet --no-default-features --features provider
cargo check --locked --quiet --no-default-features --features server
cargo check --locked --quiet --no-default-features --features auth
cargo check --locked --quiet --no-default-features --features audit
cargo check --locked --quiet -p ai-audit
cargo check --locked --quiet -p ai-ratelimit
cargo check --locked --quiet -p ai-ratelimit --features redis
cargo check --locked --quiet --no-default-features --features ratelimit
cargo check --locked --quiet -p ai-budget
cargo check --locked --quiet -p ai-budget --features redis
cargo check --locked --quiet -p ai-budget --features webhook
cargo check --locked --quiet --no-default-features --features budget
cargo check --locked --quiet -p ai-redact
cargo check --locked --quiet -p ai-redact --features ocr
cargo clippy --locked --quiet -p ai-redact --features ocr --all-targets -- -D warnings
cargo check --locked --quiet --no-default-features --features redact
cargo check --locked --quiet -p ai-sse-inspect
cargo check --locked --quiet --no-default-features --features inspect
cargo check --locked --quiet -p ai-auth
cargo check --locked --quiet -p ai-provider
cargo check --locked --quiet -p ai-provider --features bedrock
cargo check --locked --quiet -p ai-provider --features vertex
cargo check --locked --quiet -p ai-core --no-default-features
cargo check --locked --quiet -p ai-core --features test-util

step "cargo test (workspace: unit, integration, property, doc tests)"
mkdir -p target
cargo test --workspace --locked --no-fail-fast -- --skip official_anthropic_sdk 2>&1 | tee target/test-output.txt
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' target/test-output.txt | awk '{s+=$4} END {print s+0}')
echo "rust tests passed: $passed"

step "feature ocr: text in images read by Tesseract goes through the detectors"
cargo test --locked -p ai-redact --features ocr --test ocr
cargo test --locked --features ocr --lib config::tests::redact_ocr

step "feature otlp: the gen_ai spans reach an OTLP/HTTP collector"
cargo test --locked --features otlp --test otlp

step "official anthropic Python SDK against the real gateway (pytest output below)"
cargo test --locked --test python_sdk -- --nocapture

step "example gateway (release): --help, --check-config, then the official SDK against its demo upstream"
cargo build --release --locked --example gateway
cargo build --release --locked -p ai-audit --bin audit-verify
./target/release/examples/gateway --help | head -3
# The sample configuration signs its audit log with a key from the environment.
./target/release/audit-verify --generate-key >target/audit-key.txt
AUDIT_SIGNING_KEY=$(sed -n 's/^signing key (secret): //p' target/audit-key.txt)
audit_public=$(sed -n 's/^public key: *//p' target/audit-key.txt)
export AUDIT_SIGNING_KEY
export GATEWAY_USER_PSEUDONYM_KEY=pseudonym-key-of-the-test-script
ANTHROPIC_API_KEY=sk-ant-check-only GATEWAY_KEY_PEPPER=pepper-for-the-check-only ./target/release/examples/gateway --check-config examples/gateway.toml
if env -u ANTHROPIC_API_KEY GATEWAY_KEY_PEPPER=pepper-for-the-check-only ./target/release/examples/gateway --check-config examples/gateway.toml 2>target/check-config.err; then
  echo "--check-config accepted a file whose key variable is not set"; exit 1
fi
grep -q "ANTHROPIC_API_KEY is not set" target/check-config.err || { cat target/check-config.err; exit 1; }
echo "ok: a missing key variable is refused: $(cat target/check-config.err)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
log=$(mktemp)
# Each run in a fresh working directory: the gateway writes its audit log to ./audit.
work=$(mktemp -d)
(cd "$work" && exec env -u ANTHROPIC_API_KEY -u AUDIT_SIGNING_KEY "$root/target/release/examples/gateway" --listen "127.0.0.1:$port") >"$log" 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if curl -s -o /dev/null "http://127.0.0.1:$port/v1/models"; then break; fi
  sleep 0.1
done
grep -q "demo upstream" "$log" || { echo "the gateway did not announce the demo upstream:"; cat "$log"; exit 1; }
.venv/bin/python tests/python/demo_check.py "http://127.0.0.1:$port"
kill $gw
wait $gw 2>/dev/null || true
trap - EXIT
echo "the audit log the first README command left (key generated on first start):"
./target/release/audit-verify --public-key-file "$work/audit/signing.pub" "$work/audit"

step "example gateway (release) from examples/gateway.toml with a minted key: starts, authenticates, answers, logs, stops on SIGTERM"
cargo build --release --locked --example mint_key
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
log=$(mktemp)
conf=$(mktemp -d)
cp examples/gateway.toml examples/keys.toml "$conf/"
export GATEWAY_KEY_PEPPER=pepper-of-the-test-script
./target/release/examples/mint_key --subject ci --tenant test >>"$conf/keys.toml" 2>"$conf/key.txt"
key=$(grep '^gwk_' "$conf/key.txt")
# A vendor key that is never used: the only requests sent are refused by the gateway itself.
work=$(mktemp -d)
(cd "$work" && ANTHROPIC_API_KEY=sk-ant-not-a-real-key exec "$root/target/release/examples/gateway" --config "$conf/gateway.toml" --listen "127.0.0.1:$port") >"$log" 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if grep -q "listening on" "$log"; then break; fi
  sleep 0.1
done
status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/messages" -H 'content-type: application/json' \
  -d '{"model":"claude-sonnet-4-5","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}')
[ "$status" = 401 ] || { echo "expected 401 without a key, got $status"; cat "$log"; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/messages" -H 'content-type: application/json' \
  -H "x-api-key: $key" -d '{"model":"claude-sonnet-4-5","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}')
[ "$status" = 400 ] || { echo "expected 400 for max_tokens 0 with a valid key, got $status"; cat "$log"; exit 1; }
kill -TERM $gw
wait $gw || { echo "the gateway did not exit cleanly on SIGTERM"; cat "$log"; exit 1; }
trap - EXIT
grep -q 'ai_gateway::access: request method=POST path="/v1/messages" status=400 model="claude-sonnet-4-5"' "$log" \
  || { echo "no access log line:"; cat "$log"; exit 1; }
grep -q 'status=401 .*auth_failure="missing_credential"' "$log" || { echo "no access line for the 401:"; cat "$log"; exit 1; }
echo "its audit log, signed with the key from the environment: the 401 and the 400 are recorded"
./target/release/audit-verify --public-key "$audit_public" "$work/audit"
grep -q '"outcome":"auth_failed","status":401,"reason":"missing_credential"' "$work"/audit/audit-*.jsonl \
  || { echo "no audit record of the 401"; cat "$work"/audit/audit-*.jsonl; exit 1; }
grep -q '"outcome":"rejected","status":400,"reason":"invalid_request_error"' "$work"/audit/audit-*.jsonl \
  || { echo "no audit record of the 400"; cat "$work"/audit/audit-*.jsonl; exit 1; }
if grep -q -e "$key" -e sk-ant-not-a-real-key "$log"; then echo "a key reached the log"; exit 1; fi

step "example gateway (release) with [auth] and the demo upstream: the official SDK with the minted key"
# The same configuration without [upstream.anthropic]: the demo upstream answers.
python3 - "$conf/gateway.toml" <<'PY'
import re, sys
p = sys.argv[1]
text = open(p).read()
open(p, "w").write(re.sub(r"\n\[upstream\.anthropic\].*", "\n", text, flags=re.S))
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
work=$(mktemp -d)
(cd "$work" && exec "$root/target/release/examples/gateway" --config "$conf/gateway.toml" --listen "127.0.0.1:$port") >"$log" 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if grep -q "listening on" "$log"; then break; fi
  sleep 0.1
done
.venv/bin/python tests/python/demo_check.py "http://127.0.0.1:$port" "$key"
kill -TERM $gw
wait $gw || { echo "the gateway did not exit cleanly on SIGTERM"; cat "$log"; exit 1; }
trap - EXIT
if grep -q -e "$key" "$log"; then echo "a key reached the log"; exit 1; fi
./target/release/audit-verify --public-key "$audit_public" "$work/audit"
unset GATEWAY_KEY_PEPPER GATEWAY_USER_PSEUDONYM_KEY AUDIT_SIGNING_KEY
if grep -q $'\x1b\[' "$log"; then echo "colour codes in a log file"; exit 1; fi
cat "$log"

step "done"
echo "all checks passed"
