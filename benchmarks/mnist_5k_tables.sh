#!/usr/bin/env bash
# Regenerates the real-data tables of docs/results_mnist_5k.md: every method on the
# 5,000-digit MNIST sample (pip install ".[mnist5k]"), same small CNN, seed 0,
# 10 epochs with a 3-epoch epsilon warm-up, the standard suite on 200 held-out digits.
# One benchmark run per threat model. The published tables came from the same
# settings split over several runs (docs/mnist_5k_*/): 94 min of wall time in all on
# 2 shared CPU cores. Usage: benchmarks/mnist_5k_tables.sh OUT_DIR
set -euo pipefail
out=${1:?usage: $0 OUT_DIR}
common=(--dataset mnist_5k --epochs 10 --epsilon-warmup 3 --n-examples 200)

keras-advreg benchmark "${common[@]}" --epsilon 0.3 --norm linf --out "$out/linf" --methods \
  standard madry fast_at "fast_at:step_size=0.3" trades mart arr mixed \
  "gradient_regularization:norm=l2,penalty=double_backprop,lam=1" \
  "gradient_regularization:norm=l2,penalty=finite_difference,lam=1" \
  "gradient_regularization:penalty=double_backprop,lam=1" \
  "gradient_regularization:penalty=double_backprop,lam=10" \
  "hybrid:penalty=double_backprop" "hybrid:penalty=finite_difference" gfa \
  grad_align "grad_align:lam=2"

keras-advreg benchmark "${common[@]}" --epsilon 2.0 --norm l2 --out "$out/l2" --methods \
  standard madry fast_at trades mart arr mixed \
  "gradient_regularization:penalty=double_backprop,lam=1" \
  "gradient_regularization:penalty=finite_difference,lam=1" \
  "hybrid:penalty=double_backprop" "hybrid:penalty=finite_difference" gfa
