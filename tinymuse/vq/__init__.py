"""The VQ image tokenizer (Muse's VQGAN stage, without the GAN).

    from tinymuse.vq import VQConfig, VQTokenizer
    tokenizer = VQTokenizer(VQConfig(image_size=32))     # 32×32 images → 8×8 tokens
    ids = tokenizer.encode(images)                       # (B, 8, 8) int64
    images = tokenizer.decode(ids)                       # (B, 3, 32, 32) in [-1, 1]

Modules: ``config`` (the dataclass config and the two stages' defaults), ``quantizer``
(nearest codes, straight-through gradient, EMA and dead-code restarts), ``model`` (encoder,
decoder), ``tokenizer`` (the whole model, its loss, encode/decode, save/load), ``tokens``
(reconstruction metrics and pre-encoding a dataset to a token cache). Training it is a recipe
of :mod:`tinymuse.training.vq`. Chapter 4 of the tutorials explains it.
"""
from .config import STAGES, VQConfig, stage_config
from .quantizer import Quantized, VectorQuantizer, codebook_statistics
from .model import Decoder, Encoder, ResBlock
from .tokenizer import VQOutput, VQTokenizer, reconstruction_loss
from .tokens import (ImageTokens, ReconstructionReport, evaluate_reconstruction, load_examples,
                     load_image_tokens, pre_encode, psnr)

__all__ = ["STAGES", "VQConfig", "stage_config", "Quantized", "VectorQuantizer",
           "codebook_statistics", "Encoder", "Decoder", "ResBlock", "VQOutput", "VQTokenizer",
           "reconstruction_loss", "ImageTokens", "ReconstructionReport",
           "evaluate_reconstruction", "load_examples", "load_image_tokens", "pre_encode", "psnr"]
