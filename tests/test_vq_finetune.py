"""Fine-tuning the decoder: tokens never change, reconstructions improve, runs resume exactly."""
import numpy as np
import pytest
from interrupting import Interrupted, InterruptingDataset

from tinymuse.data import ShapesDataset
from tinymuse.training import TrainConfig
from tinymuse.training.vq import finetune_decoder, train_tokenizer
from tinymuse.vq import VQConfig, VQTokenizer
from tinymuse.vq.tokens import load_examples

CONFIG = VQConfig(image_size=8, channels=4, channel_mult=(1, 2), norm_groups=2,
                  codebook_size=16, code_dim=4)
DATA = ShapesDataset(8, seed=0, length=64)
IMAGES = load_examples(ShapesDataset(8, seed=5), range(32))[0]
FINETUNE = TrainConfig(steps=40, batch_size=8, lr=3e-3, warmup_steps=1, checkpoint_every=10,
                       sample_every=1000, weight_decay=0.0, progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tokenizer trained briefly, saved, so each test can load a fresh copy."""
    out = tmp_path_factory.mktemp("vq")
    train_tokenizer(CONFIG, TrainConfig(steps=10, batch_size=4, lr=3e-3, warmup_steps=1,
                                        progress=False), DATA, out, sample_images=IMAGES[:4])
    return out / "tokenizer.safetensors"


def recon_error(tokenizer):
    recon = tokenizer.reconstruct(IMAGES).numpy()
    return float(np.mean((recon - IMAGES) ** 2))


def test_tokens_and_codebook_stay_and_reconstructions_improve(trained, tmp_path):
    before = VQTokenizer.load(trained)
    tokens_before = before.encode(IMAGES).numpy()
    error_before = recon_error(before)
    after = finetune_decoder(VQTokenizer.load(trained), FINETUNE, DATA, tmp_path)
    np.testing.assert_array_equal(after.encode(IMAGES).numpy(), tokens_before)
    old, new = before.state_dict(), after.state_dict()
    for name in old:
        if name.startswith("decoder."):
            continue
        np.testing.assert_array_equal(new[name], old[name], err_msg=name)
    assert any(not np.array_equal(new[n], old[n]) for n in old if n.startswith("decoder."))
    assert recon_error(after) < 0.9 * error_before
    np.testing.assert_array_equal(   # what was saved is what was returned
        VQTokenizer.load(tmp_path / "tokenizer.safetensors").decode(tokens_before).numpy(),
        after.decode(tokens_before).numpy())


def test_an_interrupted_finetune_resumes_exactly(trained, tmp_path):
    straight = finetune_decoder(VQTokenizer.load(trained), FINETUNE, DATA, tmp_path / "a")
    with pytest.raises(Interrupted):  # 16 sample images, then killed during step 13
        finetune_decoder(VQTokenizer.load(trained), FINETUNE,
                         InterruptingDataset(DATA, limit=16 + 12 * 8 + 1), tmp_path / "b")
    counting = InterruptingDataset(DATA, limit=10 ** 9)
    resumed = finetune_decoder(VQTokenizer.load(trained), FINETUNE, counting, tmp_path / "b")
    assert counting.reads == 16 + (40 - 10) * 8  # it went on from the step-10 checkpoint
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)
