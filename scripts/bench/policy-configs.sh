# shellcheck shell=bash
# The two gateway configurations that the policy benchmarks compare (bench-policy.sh,
# bench-policy-instructions.sh). Source it, then: gw_write_policy_configs DIR MOCK_PORT
#   DIR/bare.yaml    open mode: no keys, no store, no admin (a bare proxy)
#   DIR/policy.yaml  the full control layer: key (sk-bench) and group, RPM/TPM/concurrency limits on both,
#                    budgets on both, the SQLite audit log (DIR/audit.db) and metrics (the admin listener)
# The limits are far above any load, so every request is admitted and the work measured is the bookkeeping.
gw_write_policy_configs() {
    local dir="$1" mock_port="$2"
    cat >"$dir/bare.yaml" <<YAML
server: {listen: ["127.0.0.1:0"], threads: 1}
providers: [{name: mock, base_url: "http://127.0.0.1:$mock_port/v1", max_connections: 256}]
models: [{name: gpt-4o-mini, price: {input_per_mtok: 0.15, output_per_mtok: 0.60}, deployments: [{provider: mock}]}]
YAML
    cat >"$dir/policy.yaml" <<YAML
server: {listen: ["127.0.0.1:0"], threads: 1}
admin: {listen: "127.0.0.1:0", key_env: BENCH_ADMIN_KEY}
store: {sqlite: $dir/audit.db}
providers: [{name: mock, base_url: "http://127.0.0.1:$mock_port/v1", max_connections: 256}]
models: [{name: gpt-4o-mini, price: {input_per_mtok: 0.15, output_per_mtok: 0.60}, deployments: [{provider: mock}]}]
groups:
  - {name: bench, models: ["gpt-*"], limits: {rpm: 100000000, tpm: 1000000000, concurrency: 10000}, budget: {usd: 1000000, period: monthly}}
keys:
  - {name: bench, key: sk-bench, groups: [bench], limits: {rpm: 100000000}, budget: {usd: 1000000, period: daily}}
YAML
}
