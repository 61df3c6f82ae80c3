#!/usr/bin/env bash
# Runs every example on the file store, each in a fresh temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for example in shopping_cart bank_account warehouse; do
  echo "--- cargo run --example $example"
  cargo run -q --locked --example "$example" -- "$tmp/$example"
done
echo "--- cargo run --example orders --features sqlite"
cargo run -q --locked --example orders --features sqlite -- "$tmp/orders"
echo "--- cargo test -p es-examples --features sqlite --test orders_sqlite"
cargo test -q --locked -p es-examples --features sqlite --test orders_sqlite
cargo run -q --locked --example upcasting -- "$tmp/upcasting"

# The same examples on PostgreSQL, and the services that share one store.
if [ -z "${ES_PG_URL:-}" ]; then
  echo "SKIPPED: the examples on PostgreSQL (ES_PG_URL is not set)"
  [ -z "${CI:-}" ] || { echo "CI must set ES_PG_URL"; exit 1; }
  exit 0
fi
for example in shopping_cart bank_account warehouse upcasting; do
  echo "--- cargo run --example $example -- --store \$ES_PG_URL"
  cargo run -q --locked --example "$example" -- --store "$ES_PG_URL"
done
echo "--- cargo run --example orders --features sqlite -- --store \$ES_PG_URL"
cargo run -q --locked --example orders --features sqlite -- --store "$ES_PG_URL"
echo "--- cargo run --example microservices -- --store \$ES_PG_URL"
cargo run -q --locked --example microservices -- --store "$ES_PG_URL"
