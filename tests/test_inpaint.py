"""Tests for pvqae_lib.data.inpaint with a tiny, randomly initialised Stable Diffusion inpainting pipeline
built from configs (no weights are downloaded). Skipped when diffusers/transformers are missing."""
import json
import os
import string
import sys

import pytest
import torch

from pvqae_lib.data import make_synthetic
from pvqae_lib.data.inpaint import DiffusionInpainter, require_diffusers

os.environ.setdefault("HF_HUB_OFFLINE", "1")                 # never download anything
diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    """A StableDiffusionInpaintPipeline with a 2-block UNet (9 input channels), a 2-block VAE, a
    2-layer CLIP text encoder and a character-level CLIP tokenizer (vocabulary files written here)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=9, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8)
    vae = diffusers.AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
                                  down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    letters = list(string.ascii_lowercase)
    tokens = ["<|startoftext|>", "<|endoftext|>"] + letters + [c + "</w>" for c in letters]
    folder = tmp_path_factory.mktemp("tokenizer")                # vocab.json + merges.txt, no merges
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer.from_pretrained(str(folder), model_max_length=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, vocab_size=len(tokens), max_position_embeddings=16))
    scheduler = diffusers.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = diffusers.StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_require_diffusers_returns_the_module():
    assert require_diffusers() is diffusers


def test_missing_diffusers_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)      # makes `import diffusers` fail
    with pytest.raises(ImportError, match=r"pip install 'pvqae_lib\[diffusion\]'"):
        DiffusionInpainter.from_pretrained("/nonexistent")


def test_generate_keeps_size_and_pixels_outside_the_mask(tiny_pipeline):
    inpainter = DiffusionInpainter(tiny_pipeline, num_inference_steps=2)
    assert inpainter.work_size == 32                           # UNet sample size 16 x VAE factor 2
    image = make_synthetic("train", 48, categories=["tile"], num_per_category=1).images[0]
    mask = torch.zeros(1, 48, 48)
    mask[:, 10:30, 14:40] = 1
    out = inpainter.generate(image, mask, "broken tile with defect", seed=0, negative_prompt="perfect tile")
    assert out.shape == image.shape and out.dtype == image.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out[:, mask[0] == 0], image[:, mask[0] == 0])
    assert (out[:, mask[0] == 1] - image[:, mask[0] == 1]).abs().mean() > 1e-3   # random weights: it did change
    again = inpainter.generate(image, mask, "broken tile with defect", seed=0, negative_prompt="perfect tile")
    assert torch.allclose(out, again, atol=1e-5)               # seeded


def test_agm_anomaly_changes_only_its_mask(tiny_pipeline):
    inpainter = DiffusionInpainter(tiny_pipeline, num_inference_steps=2)
    image = make_synthetic("train", 32, categories=["weave"], num_per_category=1).images[0]
    out, mask = inpainter.anomaly(image, torch.Generator().manual_seed(0), class_name="weave")
    assert out.shape == image.shape and mask.shape == (1, 32, 32) and mask.sum() >= 1
    assert torch.equal(out[:, mask[0] == 0], image[:, mask[0] == 0])
