"""A local worker (started by `bert_tickets.workers`): repeats the API call that started its parent, given as
JSON, for its share of one round, with the command line's handling of errors and signals.

    python -m bert_tickets.worker_main '{"function": "study", "kwargs": {...}}' tickets:0/2
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from bert_tickets.api import call
from bert_tickets.cli import guarded


def main(argv: Sequence[str] | None = None) -> int:
    api_call, share = list(sys.argv[1:] if argv is None else argv)
    request = json.loads(api_call)

    def work() -> int:
        call(request["function"], request["kwargs"], share)
        return 0

    return guarded(work)


if __name__ == "__main__":
    sys.exit(main())
