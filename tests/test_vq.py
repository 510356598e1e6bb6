"""The VQ image tokenizer: shapes, the quantizer's maths, determinism, learning, saving."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinymuse
import tinymuse.functional as F
from tinymuse import Tensor, no_grad
from tinymuse.checkpoint import CheckpointError
from tinymuse.data import ShapesDataset
from tinymuse.optim import AdamW
from tinymuse.vq import (
    VectorQuantizer,
    VQConfig,
    VQTokenizer,
    codebook_statistics,
    load_image_tokens,
    pre_encode,
    psnr,
    stage_config,
)
from tinymuse.vq.tokens import load_examples

FAST = settings(max_examples=20, deadline=None)


def tiny_config(**overrides) -> VQConfig:
    settings_ = dict(image_size=8, channels=4, channel_mult=(1, 2), num_res_blocks=1,
                     norm_groups=2, codebook_size=16, code_dim=4)
    settings_.update(overrides)
    return VQConfig(**settings_)


def tiny_tokenizer(seed=0, **overrides) -> VQTokenizer:
    tinymuse.manual_seed(seed)
    return VQTokenizer(tiny_config(**overrides), seed=seed)


def random_images(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("mult", [(1,), (1, 2), (1, 2, 2)])
@pytest.mark.parametrize("batch", [1, 3])
def test_every_stage_has_the_documented_shape(mult, batch):
    config = tiny_config(image_size=16, channel_mult=mult)
    factor = 2 ** (len(mult) - 1)
    assert config.downsample == factor and config.token_size == 16 // factor
    model = VQTokenizer(config)
    images = Tensor(random_images(batch, 16))
    z = model.encoder(images)
    assert z.shape == (batch, config.code_dim, 16 // factor, 16 // factor)
    quantized = model.quantizer(z)
    assert quantized.z_q.shape == z.shape
    assert quantized.ids.shape == (batch, 16 // factor, 16 // factor)
    assert model.decoder(quantized.z_q).shape == (batch, 3, 16, 16)
    out = model(images)
    assert out.recon.shape == images.shape and out.quantized.loss.shape == ()


def test_stage_configs_give_the_cascade_sizes():
    from tinymuse.training.vq import stage_training

    base, superres = stage_config("base"), stage_config("superres")
    assert (base.image_size, base.token_size) == (32, 8)
    assert (superres.image_size, superres.token_size) == (64, 16)
    assert base.downsample == superres.downsample == 4
    # both see the same number of token positions per batch
    assert stage_training(base).batch_size * 64 == stage_training(superres).batch_size * 256
    with pytest.raises(ValueError, match="unknown stage"):
        stage_config("huge")


def test_config_rejects_sizes_that_do_not_divide_and_round_trips_as_json():
    with pytest.raises(ValueError, match="divisible by the downsampling factor 4"):
        VQConfig(image_size=30)
    with pytest.raises(ValueError, match="norm_groups"):
        VQConfig(channels=6, norm_groups=4)
    config = tiny_config(l2_normalize=True)
    assert VQConfig.from_dict(config.to_dict()) == config


# --------------------------------------------------------------- quantizer
@FAST
@given(n=st.integers(1, 40), k=st.integers(2, 12), d=st.integers(1, 6), seed=st.integers(0, 99))
def test_nearest_code_matches_brute_force_distances(n, k, d, seed):
    rng = np.random.default_rng(seed)
    quantizer = VectorQuantizer(k, d, update="loss", restart_dead_codes=False)
    quantizer.codebook.data[...] = rng.normal(size=(k, d))
    z = rng.normal(size=(n, d)).astype(np.float32)
    distances = ((z[:, None, :].astype(np.float64) - quantizer.codebook.data[None]) ** 2).sum(-1)
    ids = quantizer.nearest(z).numpy()
    # ties aside, the chosen code is at the smallest distance
    chosen = distances[np.arange(n), ids]
    np.testing.assert_allclose(chosen, distances.min(axis=1), rtol=1e-5, atol=1e-5)


@FAST
@given(batch=st.integers(1, 3), side=st.integers(1, 4), update=st.sampled_from(["ema", "loss"]),
       l2=st.booleans(), seed=st.integers(0, 99))
def test_forward_value_is_the_chosen_code(batch, side, update, l2, seed):
    rng = np.random.default_rng(seed)
    quantizer = VectorQuantizer(8, 3, update=update, l2_normalize=l2, restart_dead_codes=False)
    quantizer.codebook.data[...] = rng.normal(size=(8, 3))
    quantizer.eval()
    z = Tensor(rng.normal(size=(batch, 3, side, side)).astype(np.float32))
    out = quantizer(z)
    codes = quantizer.codes().numpy()
    expected = codes[out.ids.numpy()].transpose(0, 3, 1, 2)           # (B, D, h, w)
    np.testing.assert_allclose(out.z_q.numpy(), expected, rtol=1e-5, atol=1e-6)
    if l2:
        np.testing.assert_allclose(np.linalg.norm(out.z_q.numpy(), axis=1), 1.0, rtol=1e-4)


@FAST
@given(batch=st.integers(1, 3), side=st.integers(1, 4), update=st.sampled_from(["ema", "loss"]),
       seed=st.integers(0, 99))
def test_straight_through_hands_the_gradient_to_z_unchanged(batch, side, update, seed):
    rng = np.random.default_rng(seed)
    quantizer = VectorQuantizer(8, 3, update=update)
    z = Tensor(rng.normal(size=(batch, 3, side, side)).astype(np.float32), requires_grad=True)
    upstream = rng.normal(size=z.shape).astype(np.float32)
    (quantizer(z).z_q * Tensor(upstream)).sum().backward()
    np.testing.assert_array_equal(z.grad, upstream)
    if update == "loss":  # the codebook learns from its own loss only, never through z_q
        assert quantizer.codebook.grad is None


def test_decoder_gradient_reaches_the_encoder_output_unchanged():
    """dL/dz (encoder side) equals dL/dz_q (decoder side): the straight-through trick."""
    model = tiny_tokenizer()
    images = Tensor(random_images(2, 8))
    z = Tensor(model.encoder(images).data, requires_grad=True)   # the encoder's output, as a leaf
    quantized = model.quantizer(z)
    F.mse_loss(model.decoder(quantized.z_q), images).backward()
    z_q = Tensor(quantized.z_q.data, requires_grad=True)          # the decoder's input, as a leaf
    F.mse_loss(model.decoder(z_q), images).backward()
    np.testing.assert_allclose(z.grad, z_q.grad, rtol=1e-6, atol=1e-9)
    assert np.abs(z.grad).sum() > 0


def test_losses_pull_codes_and_encoder_outputs_together():
    """Codebook loss ‖sg[z] − q‖² moves only the codes; commitment β‖z − sg[q]‖² only z."""
    rng = np.random.default_rng(0)
    quantizer = VectorQuantizer(4, 2, beta=0.25, update="loss", restart_dead_codes=False)
    quantizer.codebook.data[...] = rng.normal(size=(4, 2))
    z = Tensor(rng.normal(size=(1, 2, 3, 3)).astype(np.float32), requires_grad=True)
    out = quantizer(z)
    out.loss.backward()
    rows = z.numpy().transpose(0, 2, 3, 1).reshape(-1, 2)
    q = quantizer.codebook.data[out.ids.numpy().reshape(-1)]
    n = rows.size
    expected_z = (0.25 * 2 / n * (rows - q)).reshape(1, 3, 3, 2).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(z.grad, expected_z, rtol=1e-5, atol=1e-7)
    expected_codes = np.zeros((4, 2))
    np.add.at(expected_codes, out.ids.numpy().reshape(-1), 2 / n * (q - rows))
    np.testing.assert_allclose(quantizer.codebook.grad, expected_codes, rtol=1e-5, atol=1e-7)
    assert out.commitment == pytest.approx(float(((rows - q) ** 2).mean()), rel=1e-5)


def test_ema_codes_converge_to_the_mean_of_their_vectors():
    rng = np.random.default_rng(1)
    centres = np.array([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]], np.float32)
    points = (centres[:, None] + 0.3 * rng.normal(size=(3, 20, 2))).reshape(-1, 2)
    quantizer = VectorQuantizer(3, 2, update="ema", decay=0.8, restart_dead_codes=False)
    quantizer.codebook.data[...] = centres + 0.5      # start near, not at, the clusters
    z = Tensor(points.astype(np.float32).T.reshape(1, 2, 6, 10))
    for _ in range(60):
        ids = quantizer(z).ids.numpy().reshape(-1)
    for k in range(3):
        np.testing.assert_allclose(quantizer.codebook.data[k], points[ids == k].mean(axis=0),
                                   atol=1e-3)
    assert quantizer.codebook.grad is None and not quantizer.codebook.requires_grad


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_dead_codes_restart_on_encoder_outputs(update):
    rng = np.random.default_rng(2)
    quantizer = VectorQuantizer(8, 2, update=update, restart_dead_codes=True)
    quantizer.codebook.data[...] = 100.0     # all codes far away and equal: code 0 takes everything
    z = Tensor(rng.normal(size=(1, 2, 4, 4)).astype(np.float32))
    quantizer.eval()
    assert quantizer(z).usage == 1 / 8
    quantizer.train()
    quantizer(z)                             # counts start at 0: the 7 unused codes are dead
    rows = z.numpy().transpose(0, 2, 3, 1).reshape(-1, 2)
    matches = [np.flatnonzero(np.all(rows == quantizer.codebook.data[k], axis=1))
               for k in range(1, 8)]
    assert all(len(m) == 1 for m in matches)                 # each now sits on an encoder output
    assert len({int(m[0]) for m in matches}) == 7            # ... a different one each
    quantizer.eval()
    assert quantizer(z).usage >= 7 / 8          # (code 0 may lose its vectors to them)


def test_without_restarts_unused_codes_stay_where_they_were():
    quantizer = VectorQuantizer(8, 2, update="loss", restart_dead_codes=False)
    quantizer.codebook.data[...] = 100.0
    z = Tensor(np.random.default_rng(3).normal(size=(1, 2, 4, 4)).astype(np.float32))
    for _ in range(50):
        out = quantizer(z)
    assert np.all(quantizer.codebook.data == 100.0) and out.usage == 1 / 8


@FAST
@given(k=st.integers(2, 50), n=st.integers(1, 200), seed=st.integers(0, 99))
def test_usage_and_perplexity(k, n, seed):
    ids = np.random.default_rng(seed).integers(0, k, n)
    usage, perplexity = codebook_statistics(ids, k)
    counts = np.bincount(ids, minlength=k)
    assert usage == pytest.approx(np.count_nonzero(counts) / k)
    assert 1.0 - 1e-9 <= perplexity <= np.count_nonzero(counts) + 1e-9
    assert codebook_statistics(np.full(n, seed % k), k) == pytest.approx((1 / k, 1.0))
    assert codebook_statistics(np.arange(k), k) == pytest.approx((1.0, k))


# ----------------------------------------------------------- encode/decode
def test_encode_decode_are_deterministic_and_batched(device):
    model = tiny_tokenizer().to(device)
    images = random_images(5, 8, seed=4)
    state = {k: v.copy() for k, v in model.state_dict().items()}
    for mode in (model.train, model.eval):  # neither mode changes anything when encoding
        mode()
        ids = model.encode(images)
        assert ids.shape == (5, 4, 4) and ids.dtype.kind == "i" and ids.device == device
        np.testing.assert_array_equal(ids.numpy(), model.encode(images).numpy())
        one_by_one = np.concatenate([model.encode(images[i:i + 1]).numpy() for i in range(5)])
        np.testing.assert_array_equal(ids.numpy(), one_by_one)
        decoded = model.decode(ids)
        assert decoded.shape == (5, 3, 8, 8) and decoded.device == device
        np.testing.assert_array_equal(decoded.numpy(), model.decode(ids).numpy())
        assert decoded.numpy().min() >= -1.0 and decoded.numpy().max() <= 1.0
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(tinymuse.backend.to_numpy(value),
                                      tinymuse.backend.to_numpy(state[name]), err_msg=name)
    assert not model.encode(images).requires_grad and not model.decode(ids).requires_grad


def test_decode_agrees_with_the_training_forward_in_eval_mode():
    model = tiny_tokenizer().eval()
    images = random_images(3, 8, seed=5)
    with no_grad():
        out = model(images)
    np.testing.assert_array_equal(out.quantized.ids.numpy(), model.encode(images).numpy())
    np.testing.assert_allclose(np.clip(out.recon.numpy(), -1, 1),
                               model.decode(model.encode(images)).numpy(), rtol=1e-5, atol=1e-6)


def test_wrong_sizes_get_clear_errors():
    model = tiny_tokenizer()
    with pytest.raises(ValueError, match=r"\(B, 3, 8, 8\).*got \(2, 3, 16, 16\)"):
        model.encode(random_images(2, 16))
    with pytest.raises(ValueError, match=r"\(B, 4, 4\)"):
        model.decode(np.zeros((2, 8, 8), np.int64))
    with pytest.raises(TypeError, match="integers"):
        model.decode(np.zeros((2, 4, 4), np.float32))
    with pytest.raises(IndexError):
        model.decode(np.full((1, 4, 4), 16))


# ----------------------------------------------------------------- learning
def test_a_tiny_tokenizer_overfits_four_images():
    """Bound: after 150 AdamW steps on four 16×16 shapes-world images the
    reconstruction PSNR is at least 24 dB (MSE in [-1, 1] below 0.016), up
    from about 7 dB at the start."""
    images, _ = load_examples(ShapesDataset(16, seed=0), range(4))
    config = tiny_config(image_size=16, channels=8, norm_groups=4, codebook_size=32, code_dim=8)
    tinymuse.manual_seed(0)
    model = VQTokenizer(config)
    optimizer = AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    start = psnr(model.eval().reconstruct(images).numpy(), images)
    model.train()
    x = Tensor(images)
    for _ in range(150):
        out = model(x)
        loss = F.mse_loss(out.recon, x) + out.quantized.loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = psnr(model.eval().reconstruct(images).numpy(), images)
    assert start < 12 and end >= 24.0, (start, end)


def test_psnr():
    a = np.zeros((2, 3, 4, 4))
    assert psnr(a, a) == math.inf
    assert psnr(a + 0.2, a) == pytest.approx(10 * math.log10(4 / 0.04))


# ---------------------------------------------------------- saving/loading
def test_checkpoint_round_trip(tmp_path):
    model = tiny_tokenizer(l2_normalize=True)
    images = random_images(3, 8, seed=6)
    model.train()
    model(images)                                  # move the EMA buffers away from their start
    model.eval()
    path = model.save(tmp_path / "tok.safetensors")
    tinymuse.manual_seed(7)
    loaded = VQTokenizer.load(path)
    after_load = tinymuse.randn(3).numpy()
    tinymuse.manual_seed(7)
    np.testing.assert_array_equal(after_load, tinymuse.randn(3).numpy())  # loading drew nothing
    assert loaded.config == model.config and not loaded.training
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value, err_msg=name)
    np.testing.assert_array_equal(loaded.encode(images).numpy(), model.encode(images).numpy())
    np.testing.assert_array_equal(loaded.reconstruct(images).numpy(),
                                  model.reconstruct(images).numpy())
    tinymuse.checkpoint.save(tmp_path / "other.safetensors", {"w": np.zeros(2)}, config={"a": 1})
    with pytest.raises(CheckpointError, match="not a saved VQTokenizer"):
        VQTokenizer.load(tmp_path / "other.safetensors")


def test_pre_encode_writes_a_token_cache(tmp_path):
    model = tiny_tokenizer().eval()
    dataset = ShapesDataset(8, seed=3, length=7)
    path = pre_encode(model, dataset, tmp_path / "tokens.safetensors", batch_size=3,
                      progress=False)
    cache = load_image_tokens(path)
    images, captions = load_examples(dataset, range(7))
    assert cache.tokens.shape == (7, 4, 4) and cache.tokens.dtype == np.int32
    np.testing.assert_array_equal(cache.tokens, model.encode(images).numpy())
    np.testing.assert_array_equal(cache.indices, np.arange(7))
    assert cache.captions == captions and len(cache) == 7
    assert VQConfig.from_dict(cache.tokenizer_config) == model.config
    with pytest.raises(ValueError, match="infinite"):
        pre_encode(model, ShapesDataset(8), tmp_path / "x.safetensors")
