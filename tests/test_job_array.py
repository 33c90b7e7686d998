"""A study as a job array: two `--cell i/2` tasks started at once share the study's runs without training any
fine-tuning twice (a task that needs another's ticket waits for its lock and reuses it), and the merge afterwards
finds every run finished."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from test_study import tiny_spec


def test_two_array_tasks_at_once_never_train_the_same_run_twice(tiny_bert, glue_dir, tmp_path):
    text = tiny_spec(tiny_bert, glue_dir, "[0.2]").replace("tasks: [sst2, rte]", "tasks: [sst2]").replace(
        "transfer: {sources: [sst2, magnitude], targets: [sst2, rte], sparsity: 0.2}",
        "transfer: {sources: [sst2], targets: [sst2, rte], sparsity: 0.2}")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(text)
    folder, written = tmp_path / "study", tmp_path / "written.log"
    env = os.environ | {"OMP_NUM_THREADS": "1", "BERT_TICKETS_WRITE_LOG": str(written)}
    tasks = [subprocess.Popen([sys.executable, "-m", "bert_tickets.cli", "study", str(spec), "--output-dir",
                               str(folder), "--cell", f"{i}/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for i in range(2)]
    results = [task.communicate(timeout=600) for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], [err[-2000:] for _, err in results]
    records = Counter(Path(line.split("\t")[1]) for line in written.read_text().splitlines())
    trained = {path: n for path, n in records.items() if path.name == "metrics.json" or path.parent.name == "seeds"
               or path.parent.name.startswith("dense_")}
    assert trained and all(n == 1 for n in trained.values()), {p: n for p, n in trained.items() if n > 1}
    merge = subprocess.run([sys.executable, "-m", "bert_tickets.cli", "study", str(spec), "--output-dir",
                            str(folder)], capture_output=True, text=True, env=env, timeout=600)
    assert merge.returncode == 0, merge.stderr[-2000:]
    assert "level 0/" not in merge.stderr  # nothing left to train
    assert "All 6 runs of the study are finished." in (folder / "report" / "README.md").read_text()
