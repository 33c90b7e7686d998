#!/bin/bash
# A study (or a transfer matrix) as a job array: task i of N computes every N-th run of the study's plan, tickets
# first. Two array tasks never train the same ticket twice: a run folder is locked while it trains, so a task that
# needs another's ticket waits for it and reuses it. Afterwards, one run without --cell writes the report.
#   sbatch --array=0-15 scripts/slurm_array.sh minilm        (then: bert-tickets report runs/studies/minilm)
#SBATCH --job-name=bert-tickets-study
#SBATCH --ntasks=1
#SBATCH --gpus=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail
SPEC=${1:-minilm}
COUNT=${SLURM_ARRAY_TASK_COUNT:?submit with sbatch --array=0-(N-1)}
# --workers packs several small fine-tunings on the task's one GPU (12 fit an H200 for MiniLM)
bert-tickets study "$SPEC" --output-dir "runs/studies/$SPEC" --cell "$SLURM_ARRAY_TASK_ID/$COUNT" \
    --workers "${WORKERS:-1}"
