"""Service routes every client shares, whatever protocol it speaks: health, debug, playground, the model lists."""
