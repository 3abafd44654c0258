#!/usr/bin/env python3
"""Writes the generated parts of the memory migrations from the data files in sql/data/: in
sql/019_memory_ranking.sql the traditional → simplified map (OpenCC's TSCharacters.txt) and the
shipped synonym groups (memory-synonyms.txt); in sql/022_memory_general_terms.sql how common
each term is (wordfreq/general-terms.tsv, by scripts/general-terms.py). Each part sits between `-- BEGIN GENERATED: name` and `-- END GENERATED:
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
RANKING = ROOT / "sql" / "019_memory_ranking.sql"
GENERAL = ROOT / "sql" / "022_memory_general_terms.sql"
OPENCC = ROOT / "sql" / "data" / "opencc" / "TSCharacters.txt"
SYNONYMS = ROOT / "sql" / "data" / "memory-synonyms.txt"
GENERAL_TERMS = ROOT / "sql" / "data" / "wordfreq" / "general-terms.tsv"


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


def general_terms() -> str:
    rows = []
    for line in GENERAL_TERMS.read_text(encoding="utf-8").splitlines():
        lang, term, zipf = line.split("\t")
        rows.append(f"({literal(lang)},{literal(term)},{float(zipf)})")
    # Ten to a line: 37,000 rows as one statement, readable in a diff.
    lines = [",".join(rows[i:i + 10]) for i in range(0, len(rows), 10)]
    return "INSERT INTO general_terms_shipped (lang, term, zipf) VALUES\n" + ",\n".join(lines) + ";\n"


PARTS = {
    RANKING: (("simplified", simplified), ("synonyms", synonyms)),
    GENERAL: (("general-terms", general_terms),),
}


def render(migration: Path, text: str) -> str:
    for name, make in PARTS[migration]:
        pattern = re.compile(rf"(-- BEGIN GENERATED: {name}\n).*?(-- END GENERATED: {name}\n)", re.S)
        if not pattern.search(text):
            sys.exit(f"{migration}: no generated part named {name}")
        text = pattern.sub(lambda m: m.group(1) + make() + m.group(2), text)
    return text


def main() -> None:
    for migration in PARTS:
        current = migration.read_text(encoding="utf-8")
        wanted = render(migration, current)
        if "--check" in sys.argv[1:]:
            if current != wanted:
                sys.exit(f"{migration} does not match sql/data/: run scripts/memory-data.py")
            continue
        migration.write_text(wanted, encoding="utf-8")


if __name__ == "__main__":
    main()
