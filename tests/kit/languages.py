"""Words of another language on a page of the admin panel, judged from the text a person sees.

No list of the panel's texts is consulted: the rules are about scripts and about what is data.

- Data (ids, URLs, descriptions, status and event codes, JSON) is what the page marks
  ``translate="no"`` (the HTML attribute meaning "not words of this page's language"); it is
  left out. Everything else is the panel's own words.
- Russian and Kazakh pages: no word in Latin letters, except data-like tokens: acronyms and codes
  in capitals (KZT, API, QR, CSV, URL), tokens with a digit (an id, a scheme like r1), and the
  brand names Kaspi and paycenter. URLs are taken out first.
- English pages: no Cyrillic letter at all.
- Kazakh pages: no run of Cyrillic words (with one of three letters or more) that the Russian
  rendering of the same page also shows: Russian left untranslated in the Kazakh panel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Every visible text node (and the window title), each trimmed; text under an element whose
# nearest translate attribute says "no" is data and left out. Hidden inputs carry no text nodes;
# the contents of closed <details> and of <option>s count: a person opens and reads them.
VISIBLE_TEXT_JS = """() => {
    const out = [document.title.trim()];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const text = node.textContent.replace(/\\s+/g, ' ').trim();
        if (!text) continue;
        const parent = node.parentElement;
        if (!parent || parent.closest('script, style, noscript, template')) continue;
        const marked = parent.closest('[translate]');
        if (marked && marked.getAttribute('translate').toLowerCase() === 'no') continue;
        out.push(text);
    }
    return out.filter(Boolean);
}"""

BRANDS = {"Kaspi", "paycenter"}
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I)
_CYRILLIC = re.compile(r"[\u0400-\u04FF]")
_CYRILLIC_WORD = re.compile(r"[\u0400-\u04FF]{3,}")
_PHRASE = re.compile(r"[\u0400-\u04FF]+(?:[ -]+[\u0400-\u04FF]+)*")


def _data_like(token: str) -> bool:
    token = token.strip("-'’")
    return (
        token in BRANDS
        or any(ch.isdigit() for ch in token)
        or (len(token) >= 2 and re.fullmatch(r"[A-Z][A-Z0-9_]*", token) is not None)
    )


def latin_words(texts: Iterable[str]) -> list[str]:
    """Words in Latin letters that are not data-like: foreign on a Russian or Kazakh page."""
    found = []
    for text in texts:
        text = _URL.sub(" ", text)
        # A token glued to letters of another kind of word ("order_id", "Kaspi-ге") is one token;
        # underscores do not make a word data: paid_at is a label left in English.
        for token in re.findall(r"[A-Za-z0-9_'’-]*[A-Za-z][A-Za-z0-9_'’-]*", text):
            if not _data_like(token):
                found.append(token)
    return found


def cyrillic_texts(texts: Iterable[str]) -> list[str]:
    """Texts with a Cyrillic letter: foreign on an English page."""
    return [text for text in texts if _CYRILLIC.search(text)]


def phrases(text: str) -> list[str]:
    """The runs of Cyrillic words in a text ("Оборот по дням, KZT" holds "Оборот по дням")."""
    return _PHRASE.findall(text)


def russian_left(kazakh: Iterable[str], russian: Iterable[str]) -> list[str]:
    """Phrases of the Kazakh rendering that the Russian rendering of the same page shows too
    (short ones, such as the abbreviation "мс", both languages share)."""
    seen = {phrase for text in russian for phrase in phrases(text)}
    return [p for text in kazakh for p in phrases(text) if p in seen and _CYRILLIC_WORD.search(p)]


def foreign(lang: str, texts: list[str], russian: list[str] | None = None) -> list[str]:
    """What on a page rendered in ``lang`` is in another language (empty: nothing)."""
    if lang == "en":
        return cyrillic_texts(texts)
    found = latin_words(texts)
    if lang == "kk":
        assert russian is not None, "the Kazakh check needs the Russian rendering of the same page"
        found += russian_left(texts, russian)
    return found
