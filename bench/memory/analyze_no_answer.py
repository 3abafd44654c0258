#!/usr/bin/env python3
"""Reads `agentd-bench memory --explain` (one query a line: what recall's ranking read) and asks
whether anything there tells a query with no answer from one with an answer.

1. Replays recall's minimum evidence at other `MEMORY_MIN_SHARE`s from the statement's own
   coverage and scores; at the share the bench ran with it must give what recall gave (checked).
   Words only: a run with the semantic pass is refused, since the replay does not read vectors.
2. Reads eleven features off each query's best memory and trains decision trees to silence the
   negatives (or the unrelated requests) on seven users, judged on the eighth, for each user in
   turn; positives are weighted by the recall they would lose.

make bench-memory-explain runs it (scikit-learn from PyPI in .data/analysis-venv):
analyze_no_answer.py EXPLAIN.jsonl [SHARE the bench ran with, if not one of 0.4 … 0.9]."""
import json
import sys
from collections import defaultdict

import numpy as np
from sklearn.tree import DecisionTreeClassifier

K, DEPTH = 5, 10  # as the bench scored them: read from the file
# Question words: what a question asks for, not what it is about.
QUESTION_WORDS = set("多少 什么 几点 好多 哪家 哪儿 哪位 哪一 哪些 哪里 哪天 哪个 哪年 几次 几回 怎么 是多 么时 时候 来着 是不 不是".split())


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def score(keys, expected, superseded):
    """recall@K and the reciprocal rank, as RecallEvaluation.score counts them."""
    stale = set(superseded)
    first_stale = next((i for i, k in enumerate(keys) if k in stale), 10**9)
    counted = [i for i, k in enumerate(keys) if k in expected and i < first_stale]
    return sum(1 for i in counted if i < K) / len(expected), (1 / (counted[0] + 1) if counted else 0.0)


def recalled(query, share=None):
    """The candidates recall gives: evident ones (or, at another share, those it would pass)."""
    candidates = (query.get("explanation") or {}).get("candidates") or []
    if share is None:
        kept = [c for c in candidates if c["evident"]]
    else:
        kept = [c for c in candidates if c["worded"] and (c["coverage"] >= share or c["strong"])]
    return kept[:DEPTH]


def figures(queries, keep):
    """Overall recall@K, MRR, and how many negatives and unrelated requests recall anything."""
    answered, recall, reciprocal = 0, 0.0, 0.0
    silent = defaultdict(lambda: [0, 0])
    for q in queries:
        keys = [c["key"] for c in keep(q)]
        if not q["expected"]:
            silent[q["category"]][0] += 1
            silent[q["category"]][1] += bool(keys)
            continue
        r, m = score(keys, set(q["expected"]), q["superseded"])
        answered += 1
        recall += r
        reciprocal += m
    return recall / answered, reciprocal / answered, dict(silent)


FEATURES = ["unexplained", "unexplained words", "rarest unexplained", "matched", "coverage", "score",
            "second/first", "content words", "rarest matched", "matched share", "unexplained share"]


def features(q):
    e = q.get("explanation") or {}
    best = recalled(q)
    if not best:
        return None
    terms = {t["lexeme"]: t for t in e.get("terms") or []}
    words = [w for w in e.get("words") or [] if w["word"] and w["lexeme"] not in QUESTION_WORDS]
    missing = [w for w in words if not (w["held"] or w["spelt_like"] or w["by_synonym"])]
    unexplained = sum(w["weight"] for w in missing)
    explained = sum(t["weight"] for t in terms.values() if not t["single"])
    top = best[0]
    matched_terms = [terms[m] for m in top["matched"] or [] if m in terms and not terms[m]["single"]]
    matched = sum(t["weight"] for t in matched_terms)
    second = best[1]["score"] / top["score"] if len(best) > 1 and top["score"] else 0.0
    return [unexplained, sum(1 for w in missing if (w["zipf"] or 3) <= 4.8), min([w["zipf"] or 3 for w in missing], default=8),
            matched, top["coverage"] or 0, top["score"], second, len(words), max([t["idf"] for t in matched_terms], default=0),
            matched / max(explained, 1e-9), unexplained / max(unexplained + matched, 1e-9)]


def trees(queries, silence):
    """Leave-one-user-out trees that silence the `silence` category against the answered queries."""
    answered = sum(1 for q in queries if q["expected"])
    rows = []
    for q in queries:
        if not q["expected"] and q["category"] != silence:
            continue
        x = features(q)
        if x is None:
            continue
        r, m = score([c["key"] for c in recalled(q)], set(q["expected"]), q["superseded"]) if q["expected"] else (0, 0)
        rows.append((q["user_id"], not q["expected"], r, m, x))
    total = sum(1 for q in queries if q["category"] == silence)
    X = np.array([r[4] for r in rows])
    y = np.array([r[1] for r in rows])
    users = np.array([r[0] for r in rows])
    lost_recall = np.array([r[2] for r in rows])
    lost_rank = np.array([r[3] for r in rows])
    print(f"\ntrees trained to silence `{silence}` ({total - int(y.sum())} of {total} silent already):")
    print(f"| depth | positives' weight | silenced | recall@{K} lost | MRR@{DEPTH} lost | answered queries silenced |")
    print("|---|---|---|---|---|---|")
    for depth in (1, 2, 3):
        for weight in (2, 4, 8, 16):
            predicted = np.zeros(len(rows), bool)
            for user in sorted(set(users)):
                train = users != user
                w = np.where(y[train], 1.0, weight * np.maximum(lost_recall[train], 0.05))
                tree = DecisionTreeClassifier(max_depth=depth, min_samples_leaf=3, random_state=0).fit(X[train], y[train], sample_weight=w)
                predicted[~train] = tree.predict(X[~train])
            wrong = predicted & ~y
            print(f"| {depth} | {weight} | {int((predicted & y).sum()) + total - int(y.sum())} of {total} | "
                  f"{lost_recall[wrong].sum() / answered:.3f} | {lost_rank[wrong].sum() / answered:.3f} | {int(wrong.sum())} |")


def main():
    global K, DEPTH
    queries = load(sys.argv[1])
    K, DEPTH = queries[0]["k"], queries[0]["depth"]
    if any(c.get("matched") is None for q in queries for c in (q.get("explanation") or {}).get("candidates") or []):
        sys.exit("a run with the semantic pass: the replay reads words only")
    # The share the bench ran with (its --ranking minimumShare; 0.4 by default) is one of these.
    shares = sorted({0.4, 0.5, 0.6, 0.7, 0.8, 0.9} | {float(a) for a in sys.argv[2:3]})
    print(f"| MEMORY_MIN_SHARE | recall@{K} | MRR@{DEPTH} | negatives recalling | unrelated recalling |")
    print("|---|---|---|---|---|")
    as_recalled = figures(queries, recalled)
    replays = [(share, figures(queries, lambda q: recalled(q, share))) for share in shares]
    if all(replayed != as_recalled for _, replayed in replays):
        sys.exit(f"no replay gives what recall gave ({as_recalled}): pass the share the bench ran with")
    for share, (recall, rank, silent) in replays:
        print(f"| {share} | {recall:.3f} | {rank:.3f} | {silent.get('negative', [0, 0])[1]} | {silent.get('unrelated', [0, 0])[1]} |")
    print("\nfeatures of the best memory, 10th / 25th / 50th / 75th / 90th percentile:")
    groups = {"negative": [], "unrelated": [], "answered": []}
    for q in queries:
        x = features(q)
        if x is None:
            continue
        if q["expected"]:
            keys = [c["key"] for c in recalled(q)]
            if score(keys, set(q["expected"]), q["superseded"])[0] > 0:
                groups["answered"].append(x)
        elif q["category"] in groups:
            groups[q["category"]].append(x)
    for i, name in enumerate(FEATURES):
        cells = " | ".join(
            f"{group}: " + " / ".join(f"{v:.2f}" for v in np.percentile([x[i] for x in rows], [10, 25, 50, 75, 90]))
            for group, rows in groups.items() if rows)
        print(f"- {name}: {cells}")
    for category in ("negative", "unrelated"):
        if any(q["category"] == category for q in queries):
            trees(queries, category)


if __name__ == "__main__":
    main()
