#!/usr/bin/env bash
# The CPU-sized study runs behind docs/studies.md, exactly as they were run (from the repository root).
# Usage: docs/studies/cpu_runs.sh OUT_DIR [STUDY...]   (default: all that can run here)
# Each step prints `=== <label> start <UTC> load <1/5/15-min load averages>` and `... end ... seconds N`.
set -u
OUT=${1:?usage: $0 OUT_DIR [STUDY...]}
shift
STUDIES=${*:-"landcover cifar10 families resolution recipes"}
AB=${ARCHBENCH:-archbench}
CIFAR_JPG=${CIFAR_JPG:-../shared/data/cifar10_jpg}

step() {  # step LABEL COMMAND...
  local label=$1; shift
  local t0; t0=$(date +%s.%N)
  echo "=== $label start $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "+ $*"
  "$@"
  local rc=$?
  echo "=== $label end $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) rc $rc seconds $(echo "$(date +%s.%N) - $t0" | bc)"
}

for s in $STUDIES; do
  case $s in
  landcover)
    step landcover-run $AB run configs/studies/landcover_resnet_depth.yaml --set output_dir="$OUT" \
      --set data.options.per_class=60 --set data.options.test_per_class=60 --set data.options.patch_size=9 \
      --set train.epochs=3 --set train.batch_size=64 --set train.threads=1 \
      --set grid.model.name=[tiny_cnn,resnet18,resnet34] --set grid.seed=[0,1,2]
    run=$(ls -d "$OUT"/landcover_resnet_depth/runs/tiny_cnn_0-* | head -1)
    step landcover-map $AB map "$run" --rf --threads 1
    step landcover-report $AB report "$OUT"/landcover_resnet_depth --formats html,md,csv
    ;;
  cifar10)
    step cifar10-run $AB run configs/studies/cifar10_resnet_recipes.yaml --set output_dir="$OUT" \
      --set data.root="$CIFAR_JPG" --set data.resolution=32 --set model.pretrained=null \
      --set data.limit_per_class=30 --set data.test_limit_per_class=50 --set train.epochs=2 \
      --set train.threads=1 --set grid.model.name=[resnet18,resnet50] --set grid.model.pool=[avg] \
      --set grid.train.optimizer=[sgd]
    step cifar10-report $AB report "$OUT"/cifar10_resnet_recipes --formats html,md,csv
    ;;
  families)
    step families-run $AB run configs/studies/three_families.yaml --set output_dir="$OUT" \
      --set data.root="$CIFAR_JPG" --set data.resolution=32 --set model.pretrained=null \
      --set data.limit_per_class=10 --set data.test_limit_per_class=5 --set train.epochs=1 \
      --set train.batch_size=20 --set train.threads=1 --set grid.seed=[0] \
      --set profile.batch_sizes=[1,8] --set profile.iters=5 --set profile.warmup=2 \
      --set explain.images=4 --set explain.methods=[gradcam,attention]
    step families-report $AB report "$OUT"/three_families --formats html,md,csv
    ;;
  resolution)
    step resolution-run $AB run configs/studies/resolution_sweep.yaml --set output_dir="$OUT" \
      --set data.root="$CIFAR_JPG" --set data.options.image_size=64 --set model.pretrained=null \
      --set data.limit_per_class=5 --set data.test_limit_per_class=3 --set train.epochs=1 \
      --set train.amp=auto --set train.batch_size=10 --set train.grad_accum=2 --set train.threads=1 \
      --set grid.model.name=[resnet18,timm:vit_tiny_patch16_224] --set grid.data.resolution=[32,48,64] \
      --set grid.seed=[0] --set profile.batch_sizes=[1,8] --set profile.iters=5 --set profile.warmup=2 \
      --set explain.images=2
    step resolution-report $AB report "$OUT"/resolution_sweep --formats html,md,csv
    ;;
  recipes)
    step recipes-run nice -n 19 $AB run configs/studies/vit_vs_resnet_recipes.yaml --set output_dir="$OUT" \
      --set data.limit_per_class=40 --set data.test_limit_per_class=50 \
      --set train.epochs=3 --set train.batch_size=32 --set train.warmup_epochs=0 --set train.threads=1
    step recipes-report $AB report "$OUT"/vit_vs_resnet_recipes --formats html,md,csv
    ;;
  *) echo "unknown study $s" >&2; exit 2 ;;
  esac
done
