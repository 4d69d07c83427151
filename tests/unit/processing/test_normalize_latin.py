"""Spanish, French and German numbers (processing/normalize_latin.py): read in their language, English unchanged."""

from __future__ import annotations

import pytest

from processing.normalize import normalize_text
from processing.normalize_latin import foreign_language, has_foreign_words, number_words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tengo 25 años.", "Tengo veinticinco años."),
        ("El libro cuesta 3,5 euros y el descuento es del 15%.",
         "El libro cuesta tres coma cinco euros y el descuento es del quince por ciento."),
        ("El precio es 1.250 € para los dos.", "El precio es mil doscientos cincuenta euros para los dos."),
        ("Il a 25 ans et il coûte -5 %.", "Il a vingt-cinq ans et il coûte moins cinq pour cent."),
        ("Nous sommes 21 dans la salle.", "Nous sommes vingt et un dans la salle."),
        ("Ich bin 25 Jahre alt und wohne seit 1998 in Berlin.",
         "Ich bin fünfundzwanzig Jahre alt und wohne seit neunzehnhundertachtundneunzig in Berlin."),
        ("Ich habe 1.000.000 Euro und 007 Agenten.", "Ich habe eine Million Euro und null null sieben Agenten."),
    ],
)  # fmt: skip
def test_numbers_read_in_their_language(text: str, expected: str) -> None:
    assert normalize_text(text).text == expected


@pytest.mark.parametrize(
    "text",
    [
        "La reunión es a las 10:30 y el 15/03/2024 en la sala.",  # times and dates: digits, not English words
        "Am 3. Mai sind es die Tage, die zählen.",  # German ordinal with a full stop
        "El libro cuesta 1,000 y no es para mí.",  # 1,000: thousands or a decimal comma; unsure
        "Es ist die Nummer 555-1234 und nicht die andere.",  # phone-shaped: left to the reader
    ],
)
def test_unsure_tokens_keep_their_digits(text: str) -> None:
    assert normalize_text(text).text == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I am 25 years old.", "I am twenty-five years old."),
        ("Meet me at Casa de la Playa at 5 pm.", "Meet me at Casa de la Playa at five P M."),
        ("The cost of El Camino del Mar is 5 dollars.", "The cost of El Camino del Mar is five dollars."),
        ("He said it. Tengo 25 años. Then he paid $20.",
         "He said it. Tengo veinticinco años. Then he paid twenty dollars."),
        ("Visit El Paso del Norte for 5 days.", "Visit El Paso del Norte for five days."),
    ],
)  # fmt: skip
def test_english_and_mixed_text(text: str, expected: str) -> None:
    assert normalize_text(text).text == expected


def test_forced_english_reads_english() -> None:
    assert normalize_text("Tengo 25 años.", language="en").text == "Tengo twenty-five años."


def test_detector() -> None:
    assert foreign_language("tengo años y el perro") == "es"
    assert foreign_language("il a des ans dans la") == "fr"
    assert foreign_language("ich bin und der Jahre") == "de"
    assert foreign_language("the cost of the house") is None
    assert foreign_language("de la") is None  # es and fr tie
    assert not has_foreign_words("I am 25 years old and live in Delhi.")


def test_number_words() -> None:
    assert number_words("1.000,5", "de") == "eintausend Komma fünf"
    assert number_words("0123", "es") == "cero uno dos tres"
    assert number_words("3.5", "fr") == "trois virgule cinq"
