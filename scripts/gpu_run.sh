#!/usr/bin/env bash
# Issue 5's GPU measurements, for the GPU machine (`device` tool). Once, on this side:
#     PYTHON=.venv/bin/python bash ../shared/gpu/prepare-carry.sh      (builds .carry/, about 55 MB)
# then one device run per part, each naming .carry in `carry` (each fits the 10-minute limit of a command):
#     bash scripts/gpu_run.sh bench     # scripts/bench_finetune.py --preset gpu -> $OUT/bench_gpu.{json,txt}
#     bash scripts/gpu_run.sh imp       # IMP to 50% on full SST-2 with MiniLM, 3 epochs a level -> $OUT/imp_sst2.txt
#     bash scripts/gpu_run.sh study     # the docs/results/minilm-gpu.yaml study, 6 workers on the GPU -> $OUT/study
# Issue 25's (packed fine-tunings), both in one device run of under 10 minutes:
#     bash scripts/gpu_run.sh packs     # bench (engine, Trainer, K = 1 ... 16 packed, MFU) -> $OUT/bench_gpu.*,
#                                       # then find with 8 seeds packed -> $OUT/find_packed.txt
# Issue 36's (the step at the device's speed): the step profile at K = 16 and 1, then the bench, in one run:
#     bash scripts/gpu_run.sh step      # -> $OUT/step_profile_k{16,1}.md, $OUT/bench_gpu.*
# Issue 36, round two (the step as one CUDA graph), in one run of under 10 minutes: the profile at K = 16 eager,
# graph and unpadded, the bench (MiniLM and BERT-base, SST-2 and RTE, K = 16, eager/compiled/graph/unpadded: host
# and device time, MFU),
# then one packed find's evaluation stepped eagerly and as a graph, its records compared within 1e-3:
#     bash scripts/gpu_run.sh graph     # -> $OUT/step_profile_{eager,graph,unpadded}.md, $OUT/bench_gpu.*,
#                                       #    $OUT/find_graph.txt
set -euo pipefail
part=${1:?usage: scripts/gpu_run.sh bench|imp|study|packs|step|graph}
source .carry/on-device.sh
# The project as an editable install (tasks/ and configs/ map into bert_tickets as pyproject says), offline:
# no dependency is fetched (the carry has them) and the device's own setuptools builds it.
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 2
export BERT_TICKETS_CACHE=/tmp/bt-cache
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
case $part in
  bench)
    python3 scripts/bench_finetune.py --preset gpu --data-dir "$BERT_TICKETS_DATA/glue" --out "$OUT/bench_gpu.json" \
      | tee "$OUT/bench_gpu.txt" ;;
  imp)
    start=$(date +%s)
    (cd /tmp && python3 -m bert_tickets.cli find --task sst2 --sparsity 0.5 --rate 0.1 --config minilm \
      --model "$BERT_TICKETS_MINILM" --data-dir "$BERT_TICKETS_DATA/glue" --output-dir /tmp/runs) 2>&1 \
      | tr '\r' '\n' | grep -v "it/s" | tee "$OUT/imp_sst2.txt"
    echo "wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/imp_sst2.txt" ;;
  study)
    # the spec with the carried data and model; stopped before the command's limit so the report still gets written
    spec=/tmp/minilm-gpu.yaml
    sed -e "s#\.\./shared/data/glue#$BERT_TICKETS_DATA/glue#" -e "s#^settings:#settings:\n  model.name: $BERT_TICKETS_MINILM#" \
      docs/results/minilm-gpu.yaml > $spec
    study=/tmp/studies/minilm-gpu
    start=$(date +%s)
    # timeout's SIGTERM stops the study like Ctrl-C: it ends its own workers (which also die with their parent,
    # PR_SET_PDEATHSIG), so nothing else on the machine is touched; SIGKILL 30 s later if it still runs
    (cd /tmp && timeout --kill-after=30 "${STUDY_SECONDS:-450}" python3 -m bert_tickets.cli study $spec \
      --output-dir $study --workers "${WORKERS:-6}") 2>&1 | tr '\r' '\n' | grep -v "it/s" > "$OUT/study.log" || true
    echo "wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/study.log"
    (cd /tmp && python3 -m bert_tickets.cli report $study) >> "$OUT/study.log" 2>&1 || true
    # one archive (the device returns few files): the report, the spec and every run's JSON and log, no weights
    (cd $study && find report study.yaml runs workers -name '*.json' -o -name '*.log' -o -name '*.csv' \
      -o -name '*.png' -o -name '*.md' -o -name '*.yaml' | tar -czf "$OUT/study.tar.gz" -T -) ;;
  packs)
    # each part capped, so that both fit one command; what finished is under $OUT either way
    timeout --kill-after=10 "${BENCH_SECONDS:-380}" python3 scripts/bench_finetune.py --preset gpu ${BENCH_ARGS:-} \
      --data-dir "$BERT_TICKETS_DATA/glue" --out "$OUT/bench_gpu.json" 2> "$OUT/bench_gpu.log" \
      | tee "$OUT/bench_gpu.txt" || echo "bench stopped: exit $?"
    tail -n 3 "$OUT/bench_gpu.log"
    # an IMP ticket's evaluation over 8 seeds: level 0 and 1 alone, then 7 ticket + 7 dense seeds as one pack
    start=$(date +%s)
    (cd /tmp && timeout --kill-after=10 "${FIND_SECONDS:-150}" python3 -m bert_tickets.cli find --task stsb \
      --sparsity 0.5 --rate 0.5 --config minilm --seeds 8 --pack 16 --model "$BERT_TICKETS_MINILM" \
      --data-dir "$BERT_TICKETS_DATA/glue" --output-dir /tmp/runs) 2>&1 | tr '\r' '\n' | grep -v "it/s" \
      > "$OUT/find_packed.txt" || true
    echo "wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/find_packed.txt"
    tail -n 25 "$OUT/find_packed.txt"
    (cd /tmp/runs && find . -name '*.json' | tar -czf "$OUT/find_packed.tar.gz" -T -) || true ;;
  step)
    # issue 36: the packed step's profile (K = 16 and 1), then the bench with its packs, each part capped
    for k in 16 1; do
      timeout --kill-after=10 120 python3 scripts/step_profile.py --k $k --data-dir "$BERT_TICKETS_DATA/glue" \
        --out "$OUT/step_profile_k$k.md" 2> "$OUT/step_profile_k$k.log" || echo "profile K=$k stopped: exit $?"
    done
    timeout --kill-after=10 "${BENCH_SECONDS:-300}" python3 scripts/bench_finetune.py --preset gpu ${BENCH_ARGS:-} \
      --data-dir "$BERT_TICKETS_DATA/glue" --out "$OUT/bench_gpu.json" 2> "$OUT/bench_gpu.log" \
      | tee "$OUT/bench_gpu.txt" || echo "bench stopped: exit $?" ;;
  graph)
    for how in eager graph unpadded; do
      flags=(--step-mode "${how/unpadded/eager}"); [ "$how" = unpadded ] && flags+=(--unpad)
      timeout --kill-after=10 60 python3 scripts/step_profile.py --k 16 "${flags[@]}" --warmup 5 \
        --data-dir "$BERT_TICKETS_DATA/glue" --out "$OUT/step_profile_$how.md" 2> "$OUT/step_profile_$how.log" \
        || echo "profile $how stopped: exit $?"
    done
    timeout --kill-after=10 "${BENCH_SECONDS:-200}" python3 scripts/bench_finetune.py --preset gpu --packs 16 \
      --masked-packs 16 --bert-base-packs 16 --pack-steps 60 --steps 60 --bert-base-steps 40 ${BENCH_ARGS:-} \
      --data-dir "$BERT_TICKETS_DATA/glue" --out "$OUT/bench_gpu.json" 2> "$OUT/bench_gpu.log" \
      | tee "$OUT/bench_gpu.txt" || echo "bench stopped: exit $?"
    # the evaluation of one ticket (4 ticket + 4 dense seeds, one pack of 8) eagerly, then again as a graph from
    # the same levels (their records removed, so only the pack trains again); the records compared within 1e-3
    find_args=(--task stsb --sparsity 0.5 --rate 0.5 --config minilm --seeds 4 --pack 8 --model "$BERT_TICKETS_MINILM"
               --data-dir "$BERT_TICKETS_DATA/glue" --set data.max_train_samples=2000)
    start=$(date +%s)
    (cd /tmp && timeout 90 python3 -m bert_tickets.cli find "${find_args[@]}" --output-dir /tmp/eager) \
      2>&1 | tr '\r' '\n' | grep -v "it/s" > "$OUT/find_graph.txt" || echo "eager find stopped" >> "$OUT/find_graph.txt"
    cp -r /tmp/eager /tmp/graph
    find /tmp/graph \( -path '*/seeds/seed_*.json' -o -path '*/dense_*/seed_*.json' -o -name ticket.json \) -delete
    (cd /tmp && timeout 90 python3 -m bert_tickets.cli find "${find_args[@]}" --set training.pack_step=graph \
      --output-dir /tmp/graph) 2>&1 | tr '\r' '\n' | grep -v "it/s" >> "$OUT/find_graph.txt" || true
    python3 scripts/compare_runs.py --within 1e-3 /tmp/eager /tmp/graph >> "$OUT/find_graph.txt" 2>&1 || true
    grep -ho '"pack_step": "[a-z]*"' -r /tmp/graph --include 'seed_*.json' | sort | uniq -c >> "$OUT/find_graph.txt" || true
    echo "wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/find_graph.txt"
    tail -n 20 "$OUT/find_graph.txt" ;;
  *) echo "unknown part $part (bench, imp, study, packs, step or graph)" >&2; exit 2 ;;
esac
