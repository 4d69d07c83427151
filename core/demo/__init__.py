"""The demo model: a random-weight checkpoint in the released layout (`checkpoint.py`), built from random BiCodec
(`random_bicodec.py`) and AP-BWE weights, so the whole service runs and is tested without downloading anything."""
