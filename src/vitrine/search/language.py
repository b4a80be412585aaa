"""Which language a short search query is in: cheap, offline, good enough to warn.

A text model that reads only English embeds "une fusée" or "un chat" somewhere meaningless, and
the search then returns unrelated images with nothing to say so. :func:`guess_language` spots the
common case from the query itself: its script (Cyrillic, Greek, Arabic, CJK, ...), function words
("une", "der", "los", "della", ...) and letters with diacritics that English does not use. It
answers only when the evidence is clear (a function word, or a non-Latin script), so an English
query with a borrowed word ("a café") is left alone.

:func:`language_note` turns a guess into what the user reads: the language, that the model does
not read it, and the model that does (from the models' cards), or searching in English.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

NAMES = {
    "en": "English",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "pl": "Polish",
    "ru": "Russian",
    "uk": "Ukrainian",
    "el": "Greek",
    "ar": "Arabic",
    "he": "Hebrew",
    "hi": "Hindi",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "tr": "Turkish",
}

# Function words, without those that are also common English words ("a", "in", "die", "son", ...),
# so that they count as evidence only for their language.
_STOP_WORDS = {
    "en": "a the an of and or with on at by for from to is are my his her its this that these those some "
    "two three near under over into onto without while who which what where".split(),
    "fr": "le les une des du au aux et ou avec sans sur sous dans chez est sont mon ma mes "
    "ton ta tes sa ses leur leurs ce cet cette ces qui que quoi où petit petite grande deux trois "
    "très près l d qu".split(),
    "de": "der das dem des ein eine einen einem einer und oder mit ohne auf unter über im ist sind "
    "mein meine dein sein seine ihr ihre zwei drei sehr neben vor hinter zum zur bei".split(),
    "es": "el los las una unos unas y o con sobre bajo en del al es son mi mis tu tus su sus este esta "
    "estos estas dos tres muy junto".split(),
    "it": "il lo gli una uno e senza sopra sotto nel nella della dello degli delle del al alla è sono "
    "mio mia tuo tua suo sua questo questa due tre molto vicino".split(),
    "pt": "o os uma umas uns e ou com sem sobre em na nos nas da dos das ao à é são meu minha "
    "seu sua este esta dois duas três muito perto".split(),
    "nl": "het een en zonder op onder boven naast bij voor zijn mijn jouw haar twee drie erg".split(),
}
# what the languages share ("de", "e", "en", "un", "la", "el", ...) counts for each of them; ties go
# to the first of this order
_ORDER = ("fr", "de", "es", "it", "pt", "nl")
_SHARED = {"un": ("fr", "es", "it"), "la": ("fr", "es", "it"), "de": ("fr", "es", "pt", "nl")}

# letters English does not use, and the languages that do
_LETTERS = {
    "fr": "éèêëàâçîïôûùüÿœæ",
    "de": "äöüß",
    "es": "ñáéíóúü¿¡",
    "it": "àèéìòù",
    "pt": "ãõçáéíóúâêôà",
    "nl": "ëïé",
    "pl": "ąćęłńóśźż",
    "tr": "çğışöü",
}

_SCRIPTS = (  # (first code point, last code point, language)
    (0x0370, 0x03FF, "el"),
    (0x0400, 0x04FF, "ru"),
    (0x0590, 0x05FF, "he"),
    (0x0600, 0x06FF, "ar"),
    (0x0900, 0x097F, "hi"),
    (0x3040, 0x30FF, "ja"),
    (0xAC00, 0xD7AF, "ko"),
    (0x4E00, 0x9FFF, "zh"),
)

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def _script_language(text: str) -> str | None:
    counts: dict[str, int] = {}
    for ch in text:
        cp = ord(ch)
        for lo, hi, lang in _SCRIPTS:
            if lo <= cp <= hi:
                counts[lang] = counts.get(lang, 0) + 1
                break
    if not counts:
        return None
    if counts.get("ja"):  # kana make it Japanese, whatever the kanji
        return "ja"
    return max(counts, key=counts.get)


def guess_language(text: str) -> str | None:
    """The ISO 639-1 code of the language ``text`` looks written in, "en" for English, or None
    when there is not enough to tell (one plain word, numbers)."""
    text = unicodedata.normalize("NFC", text or "").strip().lower()
    if not text:
        return None
    script = _script_language(text)
    if script is not None:
        return script
    words = _WORD.findall(text.replace("’", "'"))
    if not words:
        return None
    scores = dict.fromkeys(("en", *_ORDER), 0.0)
    for word in words:
        for lang, stop in _STOP_WORDS.items():
            if word in stop:
                scores[lang] += 1
        for lang in _SHARED.get(word, ()):
            scores[lang] += 1
        for lang, letters in _LETTERS.items():
            if any(ch in letters for ch in word):
                scores[lang] = scores.get(lang, 0.0) + 0.5
    best = max(_ORDER, key=lambda lang: (scores[lang], -_ORDER.index(lang)))
    if scores[best] >= 1 and scores[best] > scores["en"]:
        return best
    if scores["en"] >= 1:
        return "en"
    return None


def language_note(
    text: str, model: str, model_languages: Iterable[str], models_by_language: dict[str, list[str]]
) -> dict | None:
    """What to tell the user when ``text`` is in a language ``model`` does not read, else None.

    ``models_by_language``: language code -> the text models that read it (from the registry)."""
    readable = set(model_languages)
    lang = guess_language(text)
    if lang is None or not readable or lang in readable:
        return None
    name = NAMES.get(lang, lang)
    reads = " and ".join(NAMES.get(x, x) for x in sorted(readable))
    others = [m for m in models_by_language.get(lang, []) if m != model]
    hint = "search in " + NAMES.get(sorted(readable)[0], sorted(readable)[0])
    if others:
        command = f"vitrine index <project folder> --model {others[0]}"
        hint += f", or index the project with a model that reads {name}: `{command}`"
    return {
        "language": lang,
        "message": (
            f"“{text}” looks like {name}, and the model {model} reads only {reads}: "
            "these results are unlikely to match it"
        ),
        "hint": hint,
        "models": others,
    }


__all__ = ["NAMES", "guess_language", "language_note"]
