#!/bin/bash
# One fine-tuning spread over GPUs and nodes (data parallel on accelerate): the same recipe as one process.
# training.batch_size stays the global batch (split over the processes); only rank 0 writes, logs and prints.
# The run folder must be on a file system every node sees. Submit: sbatch scripts/slurm_data_parallel.sh
#SBATCH --job-name=bert-tickets-dp
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail
TASK=${TASK:-mnli}
SPARSITY=${SPARSITY:-0.7}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
MAIN_HOST=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
# one launcher per node; accelerate starts GPUS_PER_NODE processes on each and wires them together
srun accelerate launch --multi_gpu --num_machines "$SLURM_NNODES" --machine_rank "$SLURM_NODEID" \
    --num_processes $((SLURM_NNODES * GPUS_PER_NODE)) --main_process_ip "$MAIN_HOST" --main_process_port 29500 \
    --mixed_precision bf16 \
    -m bert_tickets.cli find --task "$TASK" --sparsity "$SPARSITY" --config paper --output-dir runs "$@"
# Killed or preempted? Submit it again: finished levels are skipped and the current one resumes from its last
# checkpoint (training.checkpoint_minutes, 15 by default).
