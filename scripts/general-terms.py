#!/usr/bin/env python3
"""Writes sql/data/wordfreq/general-terms.tsv: how common each term is in general Chinese and
English text, from wordfreq 3.1.1's lists (data CC BY-SA 4.0, sql/data/wordfreq/README.md).
Recall weighs a query term by it: a word the user wrote often among few memories but that
everybody writes ("现在", "每个月", "number") is weak evidence that a memory answers the query.

Chinese terms are the search's own: single characters and two-character pieces, each counted as
often as it occurs inside the list's words (a piece that only crosses word boundaries, such as
"码是", is absent). English terms are words; the migration stems them as the search does.
Each line: language, term, Zipf frequency (log10 of occurrences per billion words).

    python3 scripts/general-terms.py   # needs wordfreq: scripts/wordfreq-venv.sh gives a python
"""
import collections
import math
import re
from pathlib import Path

import wordfreq

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "sql" / "data" / "wordfreq" / "general-terms.tsv"
# Below these a term weighs fully anyway (MemoryStore.Ranking.specificZipf): shipping rarer
# terms would change nothing but the file's size. Characters go lower: a two-character piece
# the list lacks is estimated from its characters.
CHARACTER_FLOOR = 3.0
TERM_FLOOR = 3.5
CJK = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff]+$")
ENGLISH = re.compile(r"^[a-z]+(?:'[a-z]+)?$")


def zipf(frequency: float) -> float:
    return math.log10(frequency) + 9


def main() -> None:
    characters: collections.Counter = collections.Counter()
    pieces: collections.Counter = collections.Counter()
    for word, frequency in wordfreq.get_frequency_dict("zh").items():
        if not CJK.match(word):
            continue
        for character in word:
            characters[character] += frequency
        for start in range(len(word) - 1):
            pieces[word[start:start + 2]] += frequency
    rows = []
    rows += [("zh", c, zipf(f)) for c, f in characters.items() if zipf(f) >= CHARACTER_FLOOR]
    rows += [("zh", p, zipf(f)) for p, f in pieces.items() if zipf(f) >= TERM_FLOOR]
    rows += [("en", w, zipf(f)) for w, f in wordfreq.get_frequency_dict("en").items()
             if ENGLISH.match(w) and zipf(f) >= TERM_FLOOR]
    rows.sort()
    OUTPUT.write_text("".join(f"{lang}\t{term}\t{value:.2f}\n" for lang, term, value in rows), encoding="utf-8")
    print(f"{OUTPUT}: {len(rows)} terms")


if __name__ == "__main__":
    main()
