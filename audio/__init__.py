"""Signal and format code with no model inside: PCM conversion, WAV headers, mu-law, crossfades,
resampling (a low-delay polyphase filter), fixed-size re-framing and streaming encoders (PyAV). Imports numpy and
av only."""
