"""The query-language guess behind the "this model reads only English" note: the queries users
typed (French articles, accents, other scripts) are caught; English queries, even with a borrowed
word, are left alone."""

from __future__ import annotations

import pytest

from vitrine.search.language import guess_language, language_note


@pytest.mark.parametrize(
    ("query", "language"),
    [
        ("une fusée", "fr"),
        ("un chat", "fr"),
        ("le chat dort sur le canapé", "fr"),
        ("l'église du village", "fr"),
        ("der Hund im Garten", "de"),
        ("el perro y la pelota", "es"),
        ("il gatto nero", "it"),
        ("uma casa com jardim", "pt"),
        ("een kat op het dak", "nl"),
        ("кошка", "ru"),
        ("ねこ", "ja"),
        ("猫", "zh"),
        ("a cat", "en"),
        ("a cup of coffee", "en"),
        ("a rocket launch", "en"),
        ("a café on the corner", "en"),
        ("sunset at la jolla", "en"),
        ("the die is cast", "en"),
    ],
)
def test_guess_language(query, language):
    assert guess_language(query) == language


@pytest.mark.parametrize("query", ["", "   ", "cat", "chat", "fusée", "café", "2024", "motorcycle"])
def test_too_little_to_tell(query):
    assert guess_language(query) is None


def test_the_note_names_the_models_that_read_the_language():
    readers = {"en": ["offline-concepts", "clip-multilingual"], "fr": ["clip-multilingual"]}
    note = language_note("une fusée", "offline-concepts", ("en",), readers)
    assert note["language"] == "fr" and note["models"] == ["clip-multilingual"]
    assert "French" in note["message"] and "offline-concepts reads only English" in note["message"]
    assert (
        "`vitrine index <project folder> --model clip-multilingual`" in note["hint"]
        and "search in English" in note["hint"]
    )
    # no note when the model reads it, when the query is English or unclear, or the model says nothing
    assert language_note("une fusée", "clip-multilingual", ("en", "fr"), readers) is None
    assert language_note("a rocket", "offline-concepts", ("en",), readers) is None
    assert language_note("fusée", "offline-concepts", ("en",), readers) is None
    assert language_note("une fusée", "mystery", (), readers) is None
    # no model reads it: the hint says to search in English only
    lonely = language_note("кошка", "offline-concepts", ("en",), {"en": ["offline-concepts"]})
    assert lonely["models"] == [] and lonely["hint"] == "search in English"
