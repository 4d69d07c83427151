"""Pronunciation dictionaries, ElevenLabs-compatible: alias rules a key stores (from rules or a PLS file) and names
in its requests (`pronunciation_dictionary_locators`); the pipeline applies them (processing/lexicon.py) through its
`PronunciationLexicons` protocol. A key's dictionaries are its own: another key's are not found.

- `records`: the stored dictionary, ids, limits, refusals;
- `pls`: PLS files read (safely: no DTD, no entities) and written;
- `stores`: where dictionaries live (PostgreSQL `tts_pronunciation_dictionaries` when the voice store is PostgreSQL,
  else one JSON file each under `TTS_VOICE_DIR/pronunciation`);
- `dictionaries`: create / list / get / delete with ownership, and the rules a request uses.
"""

from services.pronunciation.dictionaries import PronunciationDictionaries
from services.pronunciation.records import DictionaryRecord, PronunciationError

__all__ = ["DictionaryRecord", "PronunciationDictionaries", "PronunciationError"]
