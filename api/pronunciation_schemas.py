"""Request fields for alias rules: a request's own `lexicon` (native and OpenAI bodies) and ElevenLabs'
`pronunciation_dictionary_locators` (its HTTP bodies and socket messages). What they do: processing/lexicon.py."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from processing.lexicon import MAX_RULE_CHARS, AliasRule, DictionaryLocator, Lexicon

MAX_LEXICON_RULES = 100  # a request's own rules
MAX_LOCATORS = 3  # dictionaries per request, as ElevenLabs allows


class LexiconEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=MAX_RULE_CHARS, description="What is written.")
    alias: str = Field(..., max_length=MAX_RULE_CHARS, description="What is said instead.")
    case_sensitive: bool = Field(True, description="Match the written case only.")
    word_boundaries: bool = Field(True, description="Match whole words only.")


class LexiconField(BaseModel):
    lexicon: list[LexiconEntry] | None = Field(
        None,
        max_length=MAX_LEXICON_RULES,
        description="Alias rules for this request only, applied before normalisation: "
        '[{"text": "nginx", "alias": "engine x"}] (see docs/api/pronunciation.md).',
    )

    def to_lexicon(self) -> Lexicon | None:
        if not self.lexicon:
            return None
        return Lexicon(
            tuple(AliasRule(e.text, e.alias, e.case_sensitive, e.word_boundaries) for e in self.lexicon)
        )


class Locator(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pronunciation_dictionary_id: str = Field(..., min_length=1, max_length=64)
    version_id: str | None = Field(None, max_length=64)


class LocatorsField(BaseModel):
    pronunciation_dictionary_locators: list[Locator] | None = Field(
        None,
        max_length=MAX_LOCATORS,
        description="Stored pronunciation dictionaries to apply, in order (at most 3).",
    )

    def locators(self) -> tuple[DictionaryLocator, ...]:
        return tuple(
            DictionaryLocator(item.pronunciation_dictionary_id, item.version_id)
            for item in self.pronunciation_dictionary_locators or ()
        )
