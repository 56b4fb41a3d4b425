"""What clinical notes state about a topic, sentence by sentence, each with the chunk that says it.

Some facts live only in the notes' text: Synthea's history-and-physical notes give the education level, the
socioeconomic background, insurance, smoking and drinking in a "Social History" paragraph, and each visit's
"Chief Complaint" as a list. A search hands a small model a whole chunk, and the model then picks the wrong
sentence of it or answers from a coded row that shares a word. Here code does the reading: each chunk is cut
into statements (a sentence, or a section's list as one statement), and the statements whose words, or the
words notes use for the same topic (:data:`vocabulary.NOTE_TOPICS`), meet the asked topic are returned with
their ``DocumentReference/id#n`` citations. :func:`answer` turns them into the sentence ``lookup`` prints, in
the notes' own words, so the claim check that holds a note-backed sentence to the note's text passes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ehr_agent.tools import vocabulary as vocab
from ehr_agent.tools.retrieval.projections import Row

# Words that every note or question about notes carries; they say nothing about the topic.
_GENERIC = frozenset(vocab.stem(w) for w in """note notes clinical chart documented documentation say says said
according mention mentions mentioned describe described describes state states stated write written wrote report
reported physical present illness patient background kind type what which where per far""".split())
# Words of a question about the notes that name no thing ("Was memory loss one of the things that brought him
# in?", "did she come in complaining of").
_NO_THING = frozenset(vocab.stem(w) for w in """come came coming listed list lists among one things thing sort
any ever visit visits appointment appointments reason reasons""".split())
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_ITEM = re.compile(r"(?:^|\s)-\s+")


@dataclass(frozen=True)
class Statement:
    """One thing a note says: a sentence of a section, or a section's list ("Cognitive Difficulties; Sleep
    Disturbances") as one statement."""

    ref: str  #: the chunk that holds it, ``DocumentReference/id#n``
    day: str  #: the note's day, ``YYYY-MM-DD`` ("" when the note has none)
    section: str  #: the section heading ("Social History"), "" when none
    text: str  #: the statement in the note's words
    row: str = ""  #: the whole chunk's line, as retrieval cites it (the evidence a citation is checked against)
    listed: bool = False  #: a section's list, items joined with "; "



def statements(chunks: Iterable[Row]) -> list[Statement]:
    """The statements of note chunks (rows of :func:`tools.retrieval.notes.note_chunks`), in chunk order."""
    out: list[Statement] = []
    for row in chunks:
        section = row.display or ""
        body = row.text.removesuffix(f" [{row.ref}]")
        marker = f"{section}: " if section else ": "
        body = body.split(marker, 1)[1] if marker in body else body
        day = (row.date or "")[:10]
        if _ITEM.match(body):
            items = [x.strip() for x in _ITEM.split(body) if x.strip()]
            out.append(Statement(row.ref, day, section, "; ".join(items), row.text, listed=True))
            continue
        for sentence in _SENTENCE.split(body):
            sentence = sentence.strip().rstrip(".").strip()
            if sentence:
                out.append(Statement(row.ref, day, section, sentence, row.text))
    return out


def _topic_key(st: str) -> str | None:
    """The :data:`vocabulary.NOTE_TOPICS` key a stem names: itself, or a key of five letters or more that it
    extends ("socioeconomically" -> socioeconomic, "educational" -> education)."""
    if st in vocab.NOTE_TOPICS:
        return st
    return next((k for k in vocab.NOTE_TOPICS if len(k) >= 5 and st.startswith(k)), None)


def topic_stems(text: str) -> set[str]:
    """The stems that name ``text``'s topic, with the words notes use for it ("school" -> education, college,
    diploma...); words that only point at the notes ("according to the note") are dropped."""
    own = {vocab.stem(w) for w in vocab.words(text) if len(w) > 2 and not re.fullmatch(r"[\d-]+", w)}
    expanded = set(own)
    for s in own:
        key = _topic_key(s)
        expanded |= {vocab.stem(w) for w in vocab.NOTE_TOPICS.get(key, "").split()} if key else set()
    return {s for s in expanded if s not in _GENERIC and s not in vocab.FILLER_STEMS}


def names_note_topic(text: str) -> bool:
    """Whether ``text`` names one of the topics notes write about in their own words (education, income,
    complaints, smoking...: the keys of :data:`vocabulary.NOTE_TOPICS`)."""
    return any(_topic_key(vocab.stem(w)) for w in vocab.words(text))


def beyond_topic(text: str) -> str:
    """The words of ``text`` that name a thing besides its notes topic ("Is tingling in hands and feet ever
    listed among her complaints?" -> "tingling hands feet", "Has he complained about back pain?" -> "back
    pain"), "" when the topic is all it asks about."""
    keep = []
    for run in vocab.noun_phrases(text):
        keep += [w for w in run if not _topic_key(vocab.stem(w)) and vocab.stem(w) not in _NO_THING and topic_stems(w)]
    if not keep:
        return ""
    # The question's own span when little lies between the words ("tingling in hands and feet").
    span = re.search(r"\b" + re.escape(keep[0]) + r"\b.*?\b" + re.escape(keep[-1]) + r"\b", text, re.I)
    if span and len(vocab.words(span.group(0))) <= len(keep) + 3:
        return span.group(0)
    return " ".join(keep)


def section_stems(text: str) -> set[str]:
    """Stems of the note headings under which ``text``'s topics are written ("education" -> social, history)."""
    keys = {_topic_key(vocab.stem(w)) for w in vocab.words(text)} - {None}
    heads = {vocab.NOTE_SECTIONS[k] for k in keys}
    return {vocab.stem(w) for h in heads for w in vocab.words(h)}


def about(found: Iterable[Statement], topic: str, *, day: str | None = None, start: str | None = None,
          end: str | None = None) -> list[Statement]:
    """The statements about ``topic``, newest first: those of ``day`` when one is given, else those in the
    ``start``..``end`` window.

    A topic the notes write about in their own words (:func:`names_note_topic`: education, income,
    complaints) meets a statement that uses any of those words, or a list under the heading the topic is
    written under (a "Chief Complaint" list for "symptoms"); when any statement under that heading
    qualifies, only those count ("lifestyle education regarding hypertension" in a plan shares a word with
    "education", but the level of education is stated in the social history). Any other topic is a thing's
    name ("tingling in hands and feet"), and a statement must hold most of its words."""
    want, heads = topic_stems(topic), section_stems(topic)
    if not want:
        return []
    named = names_note_topic(topic)
    need = max(1, -(-2 * len(want) // 3))  # two thirds of a name's words, rounded up
    hits, placed = [], []
    for s in found:
        if day and s.day != day[:10]:
            continue
        if start and (not s.day or s.day[: len(start)] < start):
            continue
        if end and (not s.day or s.day[: len(end)] > end):
            continue
        own = {vocab.stem(w) for w in vocab.words(s.text)}
        if not named:
            if len(want & own) >= need:
                hits.append(s)
            continue
        heading = {vocab.stem(w) for w in vocab.words(s.section)}
        in_place = bool(heads) and heads <= heading
        if want & own or (s.listed and in_place and want & heading):
            hits.append(s)
            if in_place:
                placed.append(s)
    return sorted(placed or hits, key=lambda s: s.day, reverse=True)


def answer(hits: list[Statement], op: str, *, limit: int = 3) -> tuple[str, dict[str, str]]:
    """The ``Answer:`` sentence(s) for statements :func:`about` found, and the chunks they cite (reference ->
    the chunk's line). ``op`` "first" answers with the earliest note; otherwise the newest comes
    first, and earlier notes that say something else follow it (a level that changed over the years)."""
    if not hits:
        return "", {}
    distinct: dict[str, list[Statement]] = {}
    for s in (reversed(hits) if op == "first" else hits):
        distinct.setdefault(" ".join(s.text.lower().split()), []).append(s)
    groups = list(distinct.values())[: 1 if op == "first" else limit]
    parts, cited = [], {}
    for i, group in enumerate(groups):
        s = group[0]
        where = f"the note of {s.day}" if s.day else "a note"
        opening = f"{where[0].upper()}{where[1:]} says" if i == 0 else f"Earlier, {where} said"
        # A list is named by its heading ("says, under Chief Complaint: Wheezing; Chest Pressure").
        under = f", under {s.section}" if s.listed and s.section else ""
        parts.append(f"{opening}{under}: {s.text} [{s.ref}].")
        cited[s.ref] = s.row or s.text
    return " ".join(parts), cited


def summary(hits: list[Statement], limit: int = 8) -> str:
    """How many notes say each distinct statement, and over which days (for the model to read, uncited); the
    ``limit`` most recent distinct statements, then how many more."""
    counts: dict[str, list[str]] = {}
    for s in hits:
        counts.setdefault(s.text, []).append(s.day)
    lines = []
    for text, days in counts.items():
        days = sorted(d for d in days if d)
        span = f", {days[0]} to {days[-1]}" if len(days) > 1 else (f", {days[0]}" if days else "")
        lines.append(f"- \"{text}\": {len(days) or 1} note(s){span}")
    more = [f"- and {len(lines) - limit} more"] if len(lines) > limit else []
    return "\n".join(lines[:limit] + more)


__all__ = ["Statement", "about", "answer", "beyond_topic", "names_note_topic", "section_stems", "statements", "summary",
           "topic_stems"]
