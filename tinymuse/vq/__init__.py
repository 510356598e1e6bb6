"""The VQ image tokenizer (Muse's VQGAN stage, without the GAN).

    from tinymuse.vq import VQConfig, VQTokenizer
    tokenizer = VQTokenizer(VQConfig(image_size=32))     # 32×32 images → 8×8 tokens
    ids = tokenizer.encode(images)                       # (B, 8, 8) int64
    images = tokenizer.decode(ids)                       # (B, 3, 32, 32) in [-1, 1]

Modules: ``config`` (dataclass configs per stage), ``quantizer`` (nearest codes,
straight-through gradient, EMA and dead-code restarts), ``model`` (encoder,
decoder), ``tokenizer`` (the whole model, encode/decode, save/load), ``train``
(the training loop and ``python -m tinymuse.vq.train``), ``tokens`` (metrics and
pre-encoding a dataset to a token cache; ``python -m tinymuse.vq.tokens``), ``finetune``
(sharpening the decoder once the tokens are fixed; ``python -m tinymuse.vq.finetune``).
Chapter 4 of the tutorials explains it.
"""
from .config import STAGES, VQConfig, VQTrainConfig, stage_config
from .quantizer import Quantized, VectorQuantizer, codebook_statistics
from .model import Decoder, Encoder, ResBlock
from .tokenizer import VQOutput, VQTokenizer
from .tokens import (ImageTokens, ReconstructionReport, evaluate_reconstruction, load_image_tokens,
                     pre_encode, psnr)
from .train import train_tokenizer
from .finetune import finetune_decoder

__all__ = ["STAGES", "VQConfig", "VQTrainConfig", "stage_config", "Quantized", "VectorQuantizer",
           "codebook_statistics", "Encoder", "Decoder", "ResBlock", "VQOutput", "VQTokenizer",
           "ImageTokens", "ReconstructionReport", "evaluate_reconstruction", "load_image_tokens",
           "pre_encode", "psnr", "train_tokenizer", "finetune_decoder"]
