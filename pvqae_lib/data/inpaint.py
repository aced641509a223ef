"""LFQUIAD's Anomaly Generation Module (AGM): prompt-guided diffusion inpainting, an optional extra.

LFQUIAD (Lin & Lai, Sec. 3.2 "Prompt-Guided Diffusion Inpainting", Sec. 4.3) inpaints the masked
region of a normal image with Stable Diffusion (``CompVis/stable-diffusion-v1-4`` through the
Hugging Face Diffusers API), with the positive prompt "broken {class_name} with defect" and the
negative prompt "perfect {class_name}", then blends the result into the normal image with
S = β(M⊙N) + (1−β)(M⊙A) + M̄⊙N. Their masks come from Perlin noise (textures) or Grounded-SAM
(objects); here they come from :func:`pvqae_lib.data.anomaly.anomaly_mask` (Perlin noise, restricted to
a given or estimated foreground).

Nothing here is needed by the book's default path, and nothing is downloaded unless you call
:meth:`DiffusionInpainter.from_pretrained` with a model id. ``diffusers`` is imported lazily:
install it with ``pip install 'pvqae_lib[diffusion]'`` (on Colab, with a GPU, for real weights).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .anomaly import AnomalyConfig, anomaly_mask, blend

PROMPT = "broken {class_name} with defect"        # LFQUIAD Sec. 4.3, positive prompt
NEGATIVE_PROMPT = "perfect {class_name}"          # and its negative prompt


def require_diffusers():
    """Import ``diffusers`` or raise an ImportError that says how to install it."""
    try:
        import diffusers
    except ImportError:
        raise ImportError("diffusion inpainting needs the optional 'diffusers' and 'transformers' packages: "
                          "pip install 'pvqae_lib[diffusion]'") from None
    return diffusers


def _to_pil(x: torch.Tensor, size: int, mode: str):
    """(C, H, W) in [0, 1] -> a PIL image of size x size ('RGB' bicubic, or 'L' nearest for masks)."""
    array = (x.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    if mode == "L":
        return Image.fromarray(array[0], "L").resize((size, size), Image.NEAREST)
    return Image.fromarray(array.transpose(1, 2, 0), "RGB").resize((size, size), Image.BICUBIC)


class DiffusionInpainter:
    """Wrap a Diffusers inpainting pipeline (``StableDiffusionInpaintPipeline``-like: called with
    ``prompt, negative_prompt, image, mask_image, height, width, num_inference_steps, guidance_scale,
    strength, generator, output_type``).

    ``work_size``: the side length the pipeline runs at (the image is resized to it and back);
    ``None`` uses the pipeline's native resolution (UNet sample size × VAE scale factor, 512 for
    Stable Diffusion 1.x), which suits small 64-256 px images far better than their own size.
    """

    def __init__(self, pipeline, num_inference_steps: int = 30, guidance_scale: float = 7.5,
                 strength: float = 1.0, work_size: int | None = None):
        self.pipeline = pipeline
        self.num_inference_steps, self.guidance_scale, self.strength = num_inference_steps, guidance_scale, strength
        unet = getattr(pipeline, "unet", None)
        if work_size is None:
            work_size = unet.config.sample_size * getattr(pipeline, "vae_scale_factor", 8) if unet is not None else 512
        self.work_size = int(work_size)

    @classmethod
    def from_pretrained(cls, path_or_id: str, device=None, dtype: torch.dtype | None = None, **kwargs):
        """Load an inpainting pipeline (a local folder, or a Hub id such as LFQUIAD's
        ``CompVis/stable-diffusion-v1-4``, which Diffusers downloads: on Colab, not here).
        ``kwargs`` go to ``AutoPipelineForInpainting.from_pretrained`` (e.g. ``variant='fp16'``)."""
        diffusers = require_diffusers()
        pipeline = diffusers.AutoPipelineForInpainting.from_pretrained(path_or_id, torch_dtype=dtype, **kwargs)
        if device is not None:
            pipeline = pipeline.to(device)
        pipeline.set_progress_bar_config(disable=True)
        return cls(pipeline)

    @torch.no_grad()
    def generate(self, image: torch.Tensor, mask: torch.Tensor, prompt: str, seed: int = 0,
                 negative_prompt: str | None = None) -> torch.Tensor:
        """Inpaint ``image`` (3, H, W) in [0, 1] where ``mask`` ((1, H, W) or (H, W), > 0.5) is set.

        The pipeline's output is resized back to H × W and pasted into the original only inside the
        mask, so every pixel outside it is returned exactly as it was (diffusers' VAE round trip
        would otherwise alter the whole image). Returns (3, H, W) in [0, 1].
        """
        _, H, W = image.shape
        m = (mask.reshape(1, H, W) > 0.5).to(image.dtype)
        S = self.work_size
        generator = torch.Generator().manual_seed(seed)
        out = self.pipeline(prompt=prompt, negative_prompt=negative_prompt, image=_to_pil(image, S, "RGB"),
                            mask_image=_to_pil(m, S, "L"), height=S, width=S,
                            num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale,
                            strength=self.strength, generator=generator, output_type="np").images
        generated = torch.from_numpy(np.asarray(out[0], dtype=np.float32)).permute(2, 0, 1)[None]  # (1, 3, S, S)
        if (S, S) != (H, W):
            generated = F.interpolate(generated, size=(H, W), mode="bilinear", align_corners=False, antialias=True)
        generated = generated[0].to(image.device, image.dtype).clamp(0, 1)
        return image * (1 - m) + generated * m                                     # paste back inside the mask

    def anomaly(self, image: torch.Tensor, generator: torch.Generator | None = None, class_name: str = "object",
                foreground: torch.Tensor | None = None,
                cfg: AnomalyConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The AGM for one normal image: a Perlin mask (inside ``foreground`` if given), inpainting
        with LFQUIAD's two prompts, then β-blending (Sec. 3.2). Returns (image (3, H, W), mask (1, H, W))."""
        cfg = cfg or AnomalyConfig()
        _, H, W = image.shape
        alpha, mask = anomaly_mask(H, generator, foreground, cfg)
        seed = int(torch.randint(2 ** 31 - 1, (), generator=generator))
        content = self.generate(image, mask, PROMPT.format(class_name=class_name), seed,
                                NEGATIVE_PROMPT.format(class_name=class_name))
        beta = cfg.beta_range[0] + (cfg.beta_range[1] - cfg.beta_range[0]) * float(torch.rand((), generator=generator))
        return blend(image, content, alpha * mask, beta), mask[None]


__all__ = ["DiffusionInpainter", "require_diffusers", "PROMPT", "NEGATIVE_PROMPT"]
