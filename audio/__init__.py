"""Signal and format code with no model inside: PCM conversion, WAV headers, mu-law, crossfades,
resampling (soxr), fixed-size re-framing and streaming encoders (PyAV). Imports numpy, soxr, av only."""
