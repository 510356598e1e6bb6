"""A cache of pre-encoded captions, so later stages need not run the tokenizer every step.

The cache is one ``.safetensors`` file: the arrays ``ids`` (int32 ``[N, L]``) and ``mask``
(bool ``[N, L]``), and the captions themselves as JSON in the file's metadata. Loading it runs
no code (unlike a pickle) and needs no tokenizer.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, safe_open, save_file
from tqdm.auto import tqdm

FORMAT = "tinymuse.token_cache.v1"


@dataclass
class TokenCache:
    ids: np.ndarray  # int32 [N, L]
    mask: np.ndarray  # bool [N, L]
    captions: list

    def __len__(self):
        return len(self.captions)


def save_token_cache(path, ids, mask, captions):
    """Write ids, mask and captions to ``path`` (a ``.safetensors`` file)."""
    ids, mask, captions = np.asarray(ids), np.asarray(mask, dtype=bool), list(captions)
    if ids.shape != mask.shape or ids.ndim != 2 or len(ids) != len(captions):
        raise ValueError(
            f"expected ids and mask of one shape [N, L] and N captions; got ids {ids.shape}, "
            f"mask {mask.shape} and {len(captions)} captions"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"format": FORMAT, "captions": json.dumps(captions)}
    save_file(
        {"ids": np.ascontiguousarray(ids), "mask": np.ascontiguousarray(mask)},
        str(path),
        metadata=metadata,
    )
    return path


def load_token_cache(path):
    """Read a :class:`TokenCache` written by :func:`save_token_cache`."""
    path = Path(path)
    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a tinymuse token cache (no {FORMAT!r} format tag)")
    arrays = load_file(str(path))
    return TokenCache(arrays["ids"], arrays["mask"], json.loads(metadata["captions"]))


def encode_dataset_captions(dataset, tokenizer, max_length=32, batch_size=512, progress=True):
    """Encode every caption of ``dataset`` with ``tokenizer`` into a :class:`TokenCache`.

    Uses ``dataset.caption(i)`` when the dataset has it (no image is loaded or drawn)."""
    read = getattr(dataset, "caption", None) or (lambda i: dataset[i][1])
    captions = [
        read(i) for i in tqdm(range(len(dataset)), desc="reading captions", disable=not progress)
    ]
    ids, mask = [], []
    for start in tqdm(range(0, len(captions), batch_size), desc="encoding", disable=not progress):
        batch_ids, batch_mask = tokenizer.encode_batch(
            captions[start : start + batch_size], max_length=max_length
        )
        ids.append(batch_ids)
        mask.append(batch_mask)
    if not captions:
        return TokenCache(np.zeros((0, max_length), np.int32), np.zeros((0, max_length), bool), [])
    return TokenCache(np.concatenate(ids), np.concatenate(mask), captions)
