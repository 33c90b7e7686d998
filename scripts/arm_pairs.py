"""Arms of a study against each other, not only against IMP and dense: paired by seed from its report's seeds.csv,
with the report's own statistics (`bert_tickets.stats.paired`: mean difference, 95% t-interval, t, p, sign test).

    python scripts/arm_pairs.py docs/results/oneshot-vs-imp-stsb-50 wanda-magnitude sparsegpt-sparsegpt_mask

Writes <folder>/arm_pairs.csv (scores as the report stores them: fractions, not × 100).
"""
import csv
import sys
from collections import defaultdict
from pathlib import Path

from bert_tickets.stats import paired
from bert_tickets.studies.report import write_csv

folder = Path(sys.argv[1])
scores = defaultdict(dict)
for row in csv.DictReader((folder / "seeds.csv").open()):
    if row["arm"] == "ticket":
        scores[row["method"]][int(row["seed"])] = float(row["score"])
pairs = [tuple(pair.split("-", 1)) for pair in sys.argv[2:]]
if unknown := sorted({arm for pair in pairs for arm in pair} - set(scores)):
    print(f"arm_pairs: no arm {unknown[0]!r} in {folder / 'seeds.csv'} (arms: {', '.join(sorted(scores))})",
          file=sys.stderr)
    sys.exit(2)
write_csv(folder / "arm_pairs.csv", [{"arm": a, "minus": b, **paired(scores[a], scores[b]).columns("diff")}
                                     for a, b in pairs])
print((folder / "arm_pairs.csv").read_text())
