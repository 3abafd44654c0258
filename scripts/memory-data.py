#!/usr/bin/env python3
"""Writes the generated parts of sql/019_memory_ranking.sql from the data files in sql/data/:
the traditional → simplified map (OpenCC's TSCharacters.txt) and the shipped synonym groups
(memory-synonyms.txt). Each part sits between `-- BEGIN GENERATED: name` and `-- END GENERATED:
name`; the rest of the file is left as it is. A migration must not change once applied, so a
later change to the data goes into a new migration, not this one.

    python3 scripts/memory-data.py          # rewrite the parts
    python3 scripts/memory-data.py --check  # exit 1 if the file is not what the data gives
"""
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIGRATION = ROOT / "sql" / "019_memory_ranking.sql"
OPENCC = ROOT / "sql" / "data" / "opencc" / "TSCharacters.txt"
SYNONYMS = ROOT / "sql" / "data" / "memory-synonyms.txt"


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def simplified() -> str:
    mapping = {}
    for line in OPENCC.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        source, targets = line.split("\t")
        target = targets.split(" ")[0]
        if source != target:
            mapping[source] = target
    body = json.dumps(mapping, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return (
        "CREATE FUNCTION agentd_simplified() RETURNS jsonb\n"
        "LANGUAGE sql IMMUTABLE PARALLEL SAFE\n"
        f"RETURN {literal(body)}::jsonb;\n"
    )


def synonym_groups() -> list[list[str]]:
    groups = []
    for line in SYNONYMS.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        terms = []
        for term in (part.strip() for part in line.split("|")):
            if term and term not in terms:
                terms.append(term)
        if len(terms) >= 2:
            groups.append(terms)
    return groups


def synonyms() -> str:
    rows = []
    for number, terms in enumerate(synonym_groups(), start=1):
        for term in terms:
            rows.append(f"    ('', 'shipped-{number:04d}', {literal(term)})")
    return "INSERT INTO memory_synonyms (tenant_id, group_name, term) VALUES\n" + ",\n".join(rows) + ";\n"


def render(text: str) -> str:
    for name, make in (("simplified", simplified), ("synonyms", synonyms)):
        pattern = re.compile(rf"(-- BEGIN GENERATED: {name}\n).*?(-- END GENERATED: {name}\n)", re.S)
        if not pattern.search(text):
            sys.exit(f"{MIGRATION}: no generated part named {name}")
        text = pattern.sub(lambda m: m.group(1) + make() + m.group(2), text)
    return text


def main() -> None:
    current = MIGRATION.read_text(encoding="utf-8")
    wanted = render(current)
    if "--check" in sys.argv[1:]:
        if current != wanted:
            sys.exit(f"{MIGRATION} does not match sql/data/: run scripts/memory-data.py")
        return
    MIGRATION.write_text(wanted, encoding="utf-8")


if __name__ == "__main__":
    main()
