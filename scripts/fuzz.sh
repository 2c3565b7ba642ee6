#!/usr/bin/env bash
# Longer property-based fuzzing than CI's fixed case set: tests/fuzz.rs with many more cases and
# a fresh random seed per run (printed, so a failure can be replayed with PROPTEST_RNG_SEED).
# Usage: scripts/fuzz.sh [CASES]   (default 20000 per property)
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-20000}
seed=${PROPTEST_RNG_SEED:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}
echo "fuzz: $cases cases per property, PROPTEST_RNG_SEED=$seed"
PROPTEST_CASES=$cases PROPTEST_RNG_SEED=$seed cargo test --release --test fuzz -- --nocapture
