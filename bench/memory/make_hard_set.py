#!/usr/bin/env python3
"""Merges the hand-written users of bench/memory/hard-set/ (hNN.json, see SPEC.md there) into
bench/memory/hard-set.json, after checking each one against the rules of SPEC.md."""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARTS = HERE / "hard-set"
CATEGORIES = ["exact", "numbers", "morphology", "typo", "script", "update", "noisy", "synonym", "cross_language", "negative", "unrelated"]


def check(user: dict, path: Path) -> list[str]:
    problems = []
    uid = user.get("user_id", "?")
    memories = user.get("memories", [])
    keys = [m["key"] for m in memories]
    position = {key: i for i, key in enumerate(keys)}
    if len(set(keys)) != len(keys):
        problems.append("duplicate memory keys")
    texts = [m["text"] for m in memories]
    if len(set(texts)) != len(texts):
        problems.append("duplicate memory texts: " + ", ".join(sorted({t for t in texts if texts.count(t) > 1})[:3]))
    if not 150 <= len(memories) <= 230:
        problems.append(f"{len(memories)} memories")
    for i, memory in enumerate(memories):
        if not memory["key"].startswith(uid + "-m"):
            problems.append(f"key {memory['key']} is not {uid}'s")
        replaced = memory.get("replaces")
        if replaced is not None and (replaced not in position or position[replaced] >= i):
            problems.append(f"{memory['key']} replaces {replaced}, which is not an earlier memory")
    for query in user.get("queries", []):
        if query.get("category") not in CATEGORIES:
            problems.append(f"unknown category {query.get('category')}")
        for key in query.get("expected", []) + query.get("superseded", []):
            if key not in position:
                problems.append(f"query {query['query'][:30]!r} names {key}, which is not a memory")
        if (query.get("category") in ("negative", "unrelated")) != (not query.get("expected")):
            problems.append(f"query {query['query'][:30]!r}: only negatives and unrelated requests have nothing expected")
    return [f"{path.name}: {p}" for p in problems]


def main() -> None:
    users, queries, problems = [], [], []
    for path in sorted(PARTS.glob("h*.json")):
        user = json.loads(path.read_text(encoding="utf-8"))
        problems += check(user, path)
        users.append({"user_id": user["user_id"], "persona": user.get("persona", ""), "memories": user["memories"]})
        for query in user["queries"]:
            item = {"user_id": user["user_id"], "category": query["category"], "query": query["query"],
                    "expected": query.get("expected", []), "superseded": query.get("superseded", [])}
            if "typo_language" in query:
                item["typo_language"] = query["typo_language"]
            queries.append(item)
    if problems:
        sys.exit("\n".join(problems))
    counts = {c: sum(1 for q in queries if q["category"] == c) for c in CATEGORIES}
    merged = {
        "description": (
            "agentd's hard recall set (issue 19): users written by hand from bench/memory/hard-set/SPEC.md, "
            "as production memories look (Chinese, English and mixed; most memories distractors sharing "
            "words with the targets; updates written after what they replace, near-miss pairs that are not "
            "updates), and queries in eleven categories: exact, numbers, morphology, typo, script, update, noisy, "
            "synonym, cross_language, negative (nothing relevant, though the query shares words with the user's "
            "memories: nothing should be recalled) and unrelated (an everyday request that no memory helps with: "
            "nothing should be recalled)."),
        "users": users,
        "queries": queries,
    }
    (HERE / "hard-set.json").write_text(json.dumps(merged, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    memories = sum(len(u["memories"]) for u in users)
    updates = sum(1 for u in users for m in u["memories"] if m.get("replaces"))
    print(f"{len(users)} users, {memories} memories ({updates} updates), {len(queries)} queries: {counts}")


if __name__ == "__main__":
    main()
