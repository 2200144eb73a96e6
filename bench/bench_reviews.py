"""Spotting malicious reviews at posting: the review head against the moderation flag and the truth.

    python bench/bench_reviews.py                     # the default marketplace (data/market)
    python bench/bench_reviews.py --data /tmp/market --json /tmp/reviews.json

Fits the review head (``training.review_head``) as ``train.py`` does (the review rows of the
training window, early stopping on the validation window's), proposes the hold threshold for the
policy's moderation capacity on the validation window, and measures on the test window's one- and
two-star reviews, with the truth's ``p_malicious``: the share of truly malicious reviews caught and
of honest ones held, by a queue as large as the reviews the policy flag
``suspected_malicious_reviewer`` names (the flag's own, the head's top and the truth's top), by a
queue of 10% of the reviews (the head's and the truth's top) and by the proposed threshold. The
flag names writers, so its queue holds every review of a named writer; the same comparison at the
size of the flag's one/two-star reviews alone is printed too. 95%
bootstrap intervals over writers.
"""

from __future__ import annotations

import json
import resource
import sys
import time

from bench.machine import describe
from bench.rows import bench_parser
from features.registry import signals
from training.dataset import review_frame
from training.progress import Progress
from training.review_head import evaluate_review_head, fit_review_head
from training.run import BASE_POLICY
from training.snapshots import default_split, snapshot_dates

ROWS = (
    ("queue the size of the flag's (every review of a named writer)", None),
    ("  flag (suspected_malicious_reviewer)", "flag"),
    ("  review head, same size", "head_at_flag"),
    ("  truth's ranking, same size", "truth_at_flag"),
    ("queue the size of the flag's one/two-star reviews", None),
    ("  review head, same size", "head_at_flag_neg"),
    ("  truth's ranking, same size", "truth_at_flag_neg"),
    ("queue of 10% of one/two-star reviews", None),
    ("  review head", "head_at_q10"),
    ("  truth's ranking", "truth_at_q10"),
    ("the proposed hold threshold", None),
    ("  review head >= hold_above", "policy"),
)


def _cell(m: dict[str, float], name: str) -> str:
    return f"{m[name]:.3f} [{m[name + '_ci_low']:.3f}, {m[name + '_ci_high']:.3f}]"


def render(m: dict[str, float]) -> str:
    """The yardsticks as a table (caught and honest held: shares of the screened test reviews)."""
    lines = [
        f"test window: {m['review_screened']:,.0f} one/two-star reviews, "
        f"{m['review_expected_malicious']:,.1f} malicious (truth-expected)",
        f"{'queue':40s} {'size':>7s}  {'malicious caught':>24s}  {'honest held':>24s}",
    ]
    for label, key in ROWS:
        if key is None:
            lines.append(label)
            continue
        size = m[f"review_{key}_size"]
        lines.append(
            f"{label:40s} {size:7,.0f}  {_cell(m, f'review_{key}_caught'):>24s}  "
            f"{_cell(m, f'review_{key}_honest_held'):>24s}"
        )
    lines += [
        f"the flag's queue: {m['review_flag_size']:,.0f} reviews, {m['review_flag_screened_size']:,.0f} of one/two stars",
        f"head / flag at the flag's size:  {_cell(m, 'review_head_vs_flag_at_flag')}; "
        f"at its one/two-star size {_cell(m, 'review_head_vs_flag_at_flag_neg')}",
        f"head / truth at the flag's size: {_cell(m, 'review_head_vs_truth_at_flag')}; "
        f"at its one/two-star size {_cell(m, 'review_head_vs_truth_at_flag_neg')}",
        f"hold_above {m['review_hold_above']:.4f} (moderation capacity {m['review_moderation_capacity']:.0%} "
        "of the validation window's one/two-star reviews)",
        f"test review rows {m['review_rows']:,.0f} (negative or reported): removed as malicious "
        f"{m['review_removed']:,.0f}, the head expects {m['review_head_expected_removed']:,.1f}, "
        f"the truth {m['review_truth_expected_removed']:,.1f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__.splitlines()[0]).parse_args(argv)
    t0 = time.perf_counter()
    print(describe(args.data))
    progress = Progress()
    split = default_split(snapshot_dates(args.data))
    frame = review_frame(args.data, progress)
    names = [s.name for s in signals()]
    train, valid = (split.opportunities_in(frame, w) for w in ("train", "valid"))
    head = fit_review_head(train, valid, names, args.seed, progress)
    result = evaluate_review_head(head, frame, split, args.data, BASE_POLICY, args.seed)
    print(
        f"review head: {head.metrics['best_iteration']:.0f} trees on {head.metrics['train_rows']:,.0f} reviews"
    )
    print(render(result.metrics))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nwall {time.perf_counter() - t0:.0f} s, peak RSS {peak:,.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(result.metrics, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
