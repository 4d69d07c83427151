"""How much speech a text chunk needs: a per-script syllable estimate, in seconds and in semantic tokens.

Speaking rates differ by script, so characters alone mislead (a Devanagari syllable is 2-4 code points, a Han
character is one syllable). Each script's units and rates:
- Han, kana, Hangul: one syllable per character, 4.5 syllables/s;
- Devanagari and the other Indic abugidas: consonants and independent vowels, less one per virama (a conjunct is
  one syllable), 6 syllables/s;
- Latin, Cyrillic, Greek and other alphabets: vowel groups per word (at least one), 5 syllables/s;
- digits and any other letter: 0.08 s each (text is normalised before this, so few remain);
plus the pauses punctuation asks for (0.4 s after a sentence end, 0.2 s after a comma, 1.0 s for an ellipsis).
"""

from __future__ import annotations

import re
import unicodedata

SEMANTIC_TOKENS_PER_SECOND = 50  # BiCodec: one semantic token per 20 ms

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# Indic consonants and independent vowels (Devanagari, Bengali, Gurmukhi, Gujarati, Oriya, Tamil, Telugu, Kannada,
# Malayalam share the layout: 0x05-0x14 vowels, 0x15-0x39 consonants in each 128-code-point block).
_INDIC_BASE = re.compile(
    r"[\u0904-\u0914\u0915-\u0939\u0958-\u0961\u0985-\u0994\u0995-\u09b9\u0a05-\u0a14"
    r"\u0a15-\u0a39\u0a85-\u0a94\u0a95-\u0ab9\u0b05-\u0b14\u0b15-\u0b39\u0b85-\u0b94"
    r"\u0b95-\u0bb9\u0c05-\u0c14\u0c15-\u0c39\u0c85-\u0c94\u0c95-\u0cb9\u0d05-\u0d14\u0d15-\u0d39]"
)
_VIRAMA = re.compile(r"[\u094d\u09cd\u0a4d\u0acd\u0b4d\u0bcd\u0c4d\u0ccd\u0d4d]")
_VOWEL_GROUP = re.compile(r"[aeiouyàáâãäåæèéêëìíîïòóôõöøùúûüýœаеёиоуыэюяіїєαεηιουω]+", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?।。！？]+")
_COMMA = re.compile(r"[,;:，、；：]")
_ELLIPSIS = re.compile(r"\.\.\.|…")

CJK_SYLLABLES_PER_S = 4.5
INDIC_SYLLABLES_PER_S = 6.0
ALPHABET_SYLLABLES_PER_S = 5.0
OTHER_CHAR_S = 0.08


def speech_seconds(text: str) -> float:
    """Expected seconds of speech for `text` at an ordinary pace (see the module doc)."""
    cjk = len(_CJK.findall(text))
    indic = max(0, len(_INDIC_BASE.findall(text)) - len(_VIRAMA.findall(text)))
    rest = _CJK.sub(" ", text)
    alphabet_syllables = 0
    other = 0
    for word in _WORD.findall(rest):
        if _INDIC_BASE.search(word):
            continue
        if all(unicodedata.category(c).startswith("L") and ord(c) < 0x2000 for c in word):
            alphabet_syllables += max(1, len(_VOWEL_GROUP.findall(word)))
        else:
            other += len(word)
    other += sum(c.isdigit() for c in text)
    pauses = (
        0.4 * len(_SENTENCE_END.findall(text))
        + 0.2 * len(_COMMA.findall(text))
        + 0.6 * len(_ELLIPSIS.findall(text))
    )
    return (
        cjk / CJK_SYLLABLES_PER_S
        + indic / INDIC_SYLLABLES_PER_S
        + alphabet_syllables / ALPHABET_SYLLABLES_PER_S
        + other * OTHER_CHAR_S
        + pauses
    )


def requested_pause_seconds(text: str) -> float:
    """The longest pause the text itself asks for (an ellipsis, a sentence end), added to the silence allowance."""
    if _ELLIPSIS.search(text):
        return 1.0
    if _SENTENCE_END.search(text):
        return 0.4
    return 0.2 if _COMMA.search(text) else 0.0


# Letters of the alphabets written with spaces between words (Latin, IPA, Greek, Cyrillic, Armenian; Vietnamese):
# scripts such as Thai or Han run words together, so a long letter run there is ordinary text.
_SPACED_ALPHABET_WORD = re.compile(r"[A-Za-z\u00c0-\u024f\u0250-\u052f\u0531-\u0587\u1e00-\u1eff]+")


def longest_spaced_word(text: str) -> int:
    """Letters in the longest word of a space-separated alphabet (0 when there is none)."""
    return max((len(word) for word in _SPACED_ALPHABET_WORD.findall(text)), default=0)


def expected_tokens(text: str) -> int:
    """Expected semantic tokens for `text` (at least 1)."""
    return max(1, round(speech_seconds(text) * SEMANTIC_TOKENS_PER_SECOND))
