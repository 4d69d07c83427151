"""Device runners: what executes one scheduler `Call`.

`ModelRunner` runs the real BiCodec and AP-BWE in one dedicated device thread (one hop per call, never per chunk or
per row). Stand-ins for benchmarks live beside it (`cost_model.py`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import numpy as np
import torch

from services.codec.scheduler import Call
from services.codec.windows import DecodeWindow, SRWindow


class ModelRunner:
    """The real models. Decode rows go through `decoder.decode_padded` when the decoder has it (right-padded rows,
    each convolution's input masked beyond the row's valid length); otherwise row by row at exact length."""

    def __init__(self, decoder: Any, sr: Any | None = None, *, threads: int = 1) -> None:
        self.decoder = decoder
        self.sr = sr
        self.hop = int(decoder.hop_length)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="codec-device")

    async def run(self, call: Call) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        fn = self._decode if call.kind == "decode" else self._super_resolve
        return await loop.run_in_executor(self._pool, fn, call)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---- in the device thread
    def _decode(self, call: Call) -> list[np.ndarray]:
        windows: list[DecodeWindow] = list(call.windows)  # type: ignore[arg-type]
        padded = getattr(self.decoder, "decode_padded", None)
        if padded is not None and call.length is not None:
            length = call.length
            ids = np.zeros((call.rows_padded, length), np.int64)
            lengths = np.zeros(call.rows_padded, np.int64)
            for i, w in enumerate(windows):
                ids[i, : w.length] = w.ids
                lengths[i] = w.length
            lengths[len(windows):] = 1  # padding rows: one valid token, output ignored
            d = torch.stack([torch.as_tensor(w.d_vector).reshape(-1) for w in windows])
            if call.rows_padded > len(windows):
                d = torch.cat([d, d[:1].expand(call.rows_padded - len(windows), -1)])
            wav = padded(ids, lengths, d)  # [rows_padded, length * hop] float32 numpy
        else:
            wav = [self._decode_row(w) for w in windows]
        return [np.ascontiguousarray(wav[i][w.keep_start * self.hop: w.keep_end * self.hop])
                for i, w in enumerate(windows)]

    def _decode_row(self, w: DecodeWindow) -> np.ndarray:
        semantic = torch.from_numpy(w.ids.astype(np.int64)).reshape(1, -1).to(self.decoder.device)
        d = torch.as_tensor(w.d_vector).reshape(1, -1)
        return self.decoder.decode_with_speaker(semantic, d)[0].float().cpu().numpy()

    def _super_resolve(self, call: Call) -> list[np.ndarray]:
        assert self.sr is not None, "an SR call without a super-resolution model"
        windows: list[SRWindow] = list(call.windows)  # type: ignore[arg-type]
        batch = getattr(self.sr, "enhance_batch", None)
        if batch is not None and call.length is not None:
            x = np.zeros((call.rows_padded, call.length), np.float32)
            for i, w in enumerate(windows):
                x[i, : w.length] = w.samples
            y = batch(x)  # [rows_padded, 3 * length]
        else:
            y = [self.sr.enhance_window(w.samples) for w in windows]
        return [np.ascontiguousarray(y[i][w.keep_start: w.keep_end]) for i, w in enumerate(windows)]
