"""Configurations: one dataclass per component, the two profiles, and the device choice.

A *profile* is one chapter in two sizes: ``quick`` runs on a 2-core CPU in
minutes, ``full`` is the paper's setting as far as a Colab GPU allows. Chapters and the
command line read every size from here and never hard-code them.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields, replace

import torch

PIXEL = "pixel"                                           # the paper's encoder, trained from pixels
BACKBONES = (PIXEL, "efficientnet-lite0", "wide-resnet50")  # the encoders (pvqae_lib.nn.backbones builds them)
LFQ_BITS = 16   # LFQUIAD's setting: a 2^16 codebook, i.e. 16 sign bits per code


def lfq_sizes(bits: int = LFQ_BITS) -> dict:
    """The ModelConfig sizes of an LFQ with ``bits`` sign bits: code_dim = bits, one code per sign
    pattern (codebook_size = 2**bits)."""
    return {"code_dim": bits, "codebook_size": 2 ** bits}


LFQ_MAX_BITS = 20   # 2**20 codes: the usage counts (one float per code) stay small


def check_lfq_size(codebook_size: int, dim: int) -> None:
    """LFQ has one code per sign pattern of its ``dim`` channels, so codebook_size must be 2**dim."""
    if dim > LFQ_MAX_BITS:
        raise ValueError(f"lfq uses one bit per code channel: code_dim {dim} would mean 2**{dim} codes; "
                         f"use code_dim <= {LFQ_MAX_BITS} (the paper: 16)")
    if codebook_size != 2 ** dim:
        raise ValueError(f"lfq needs codebook_size = 2**code_dim = {2 ** dim}, got {codebook_size}")


def setting(default, help: str, **more):
    """A config field with its help text (and ``choices`` where it has some): the one place a setting
    is described; ``python -m pvqae_lib train`` makes its flag from it (pvqae_lib.flags)."""
    return field(default=default, metadata={"help": help, **more})


def check_numbers(config, positive: tuple = (), at_least_one: tuple = ()) -> None:
    """ValueError unless every float field of a config dataclass (and every float in a tuple field) is
    finite, every field with ``choices`` holds one of them, the fields named in ``positive`` are > 0
    and those in ``at_least_one`` are >= 1."""
    name = type(config).__name__
    for f in fields(config):
        value = getattr(config, f.name)
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ValueError(f"{f.name} must be one of {', '.join(map(str, choices))}, got {value!r}")
        for v in (value if isinstance(value, (tuple, list)) else (value,)):
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{name}.{f.name} must be a finite number, got {value}")
    for key in positive:
        if not getattr(config, key) > 0:
            raise ValueError(f"{key} must be > 0, got {getattr(config, key)}")
    for key in at_least_one:
        if not getattr(config, key) >= 1:
            raise ValueError(f"{key} must be >= 1, got {getattr(config, key)}")


MAX_LR = 10.0             # a learning rate above this overflows Adam's update or diverges at once
MAX_SEED = 2 ** 32 - 1    # numpy's and every generator's seed range
MAX_SIGMA = 64.0          # a smoothing wider than a 64 px image
MAX_IMAGE_SIZE = 4096     # a side beyond this does not fit a model's activations in memory
MAX_STEPS = 1_000_000     # epochs or steps beyond this would run for years on any machine
MAX_IMAGES = 100_000      # synthetic images per category beyond this do not fit in memory


def check_at_most(config, limit: int, names: tuple) -> None:
    """ValueError naming the first field of ``names`` above ``limit``."""
    for key in names:
        if getattr(config, key) > limit:
            raise ValueError(f"{key} must be at most {limit:,}, got {getattr(config, key):,}")


def check_lr(lr: float) -> None:
    if not 0 < lr <= MAX_LR:
        raise ValueError(f"lr must be in (0, {MAX_LR:g}], got {lr}")


@dataclass
class ModelConfig:
    """The autoencoder: a VQGAN-style encoder whose last three blocks give the hierarchy."""
    model: str = setting("pvqae", "pvqae (routed multi-resolution) or vqvae (one fixed level); on a feature "
                         "backbone also ae (no quantization), patchcore (a memory bank) and membank (one level's "
                         "bank of --feature-model bank: the fixed-level and equal-descriptor peers)",
                         choices=("pvqae", "vqvae", "ae", "patchcore", "membank"))
    backbone: str = setting("pixel", "the encoder: pixel (the paper's, trained from scratch) or a frozen pretrained "
                            "pyramid (efficientnet-lite0 offline; wide-resnet50 downloads its weights)",
                            choices=BACKBONES)
    quantizer: str = setting("vq", "vq (codebook lookup) or lfq (lookup-free: codebook_size = 2**code_dim, "
                             "2**16 unless --code-dim is given)", choices=("vq", "lfq"))
    image_size: int = setting(64, "image side in pixels (a multiple of 32 on a feature backbone)")
    width: int = setting(8, "pixel model: channels of the first (full-resolution) stage")
    stem_mults: tuple = setting((1,), "pixel model: one stride-2 stage per entry before the finest level")
    level_mults: tuple = setting((4, 4, 8), "pixel model: channel multipliers of the three levels, finest first")
    code_dim: int = setting(16, "channels of a code")
    codebook_size: int = setting(64, "codes in the codebook (lfq: 2**code_dim)")
    beta: float = setting(0.25, "commitment weight β (on the encoder side, as in the paper)")
    tau: float = setting(1.0, "Gumbel-Softmax temperature τ of the routing")
    router_hidden: int = setting(64, "hidden channels of the Dynamic Routing Module")
    vq_level: int = setting(2, "vqvae and ae only: the one level quantized, 0 coarsest .. 2 finest")
    num_levels: int = setting(3, "levels of the hierarchy")
    feature_hidden: int = setting(128, "feature backbone only: channels of the projections and the decoder")
    coreset_ratio: float = setting(0.01, "patchcore, or bank_memory coreset: share of training patches kept in the "
                                   "memory bank")
    feature_model: str = setting("decoder", "feature backbone, pvqae: decoder (an autoencoder rebuilds the "
                                 "features, S_recon its error) or bank (codebooks fitted by k-means on the pyramid "
                                 "descriptors, read as a memory bank: the distance to the nearest code, chapter 8b)",
                                 choices=("decoder", "bank"))
    bank_size: int = setting(4096, "bank: codes per level (K)")
    coarse_bank_size: int = setting(0, "bank: codes of the coarsest level (0: bank_size); the coarse grid has the "
                                       "fewest positions, so a larger K there keeps more of them")
    bank_memory: str = setting("kmeans", "bank: how a level's bank is filled: kmeans (PVQAE's codebook), coreset "
                               "(PatchCore's greedy coreset, coreset_ratio) or all (every training position)",
                               choices=("kmeans", "coreset", "all"))
    bank_samples: int = setting(40_000, "bank: training descriptors per level the codebook is fitted on")
    kmeans_iters: int = setting(5, "bank: Lloyd iterations of the k-means codebook")

    def __post_init__(self):
        check_numbers(self, positive=("beta", "coreset_ratio"),
                      at_least_one=("image_size", "width", "code_dim", "codebook_size", "router_hidden", "num_levels",
                                    "feature_hidden", "bank_size", "bank_samples"))
        check_at_most(self, MAX_IMAGE_SIZE, ("image_size",))
        check_at_most(self, MAX_STEPS, ("kmeans_iters", "bank_samples", "coarse_bank_size"))
        if self.coarse_bank_size < 0:
            raise ValueError(f"coarse_bank_size must be >= 0, got {self.coarse_bank_size}")
        if self.kmeans_iters < 0:
            raise ValueError(f"kmeans_iters must be >= 0, got {self.kmeans_iters}")
        models = (("pvqae", "vqvae") if self.backbone == PIXEL
                  else ("pvqae", "vqvae", "ae", "patchcore", "membank"))
        if self.model not in models:
            raise ValueError(f"model must be one of {', '.join(models)} with the {self.backbone} backbone, "
                             f"got {self.model!r}")
        if self.backbone != PIXEL and self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 with a feature backbone, got {self.image_size}")
        if self.quantizer == "lfq":        # one code per sign pattern of the code_dim bits
            check_lfq_size(self.codebook_size, self.code_dim)
        if self.feature_model == "bank" and self.backbone == PIXEL:
            raise ValueError("feature_model 'bank' needs a feature backbone (a memory bank of pretrained features)")
        if self.model == "membank" and self.feature_model != "bank":
            raise ValueError("model 'membank' is the code bank's one-level model: it needs feature_model 'bank'")
        if self.feature_model == "bank" and self.model not in ("pvqae", "membank"):
            raise ValueError(f"feature_model 'bank' serves pvqae and membank, not {self.model!r}")
        if self.coreset_ratio > 1:
            raise ValueError(f"coreset_ratio must be in (0, 1], got {self.coreset_ratio}")
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if len(self.level_mults) < self.num_levels:
            raise ValueError(f"level_mults needs one entry per level (num_levels {self.num_levels}), "
                             f"got {self.level_mults}")
        if not 0 <= self.vq_level < self.num_levels:
            raise ValueError(f"vq_level must be in [0, {self.num_levels - 1}], got {self.vq_level}")
        self.stem_mults, self.level_mults = tuple(self.stem_mults), tuple(self.level_mults)

    @property
    def coarse_stride(self) -> int:
        """Pixels per side of one coarsest patch (the unit the budget is decided on); 32 on a
        feature pyramid (strides 8, 16, 32)."""
        if self.backbone != "pixel":
            return 32
        return 2 ** (len(self.stem_mults) + self.num_levels - 1)


def lfq_implied(model_overrides: dict) -> dict:
    """ModelConfig overrides with what ``quantizer='lfq'`` implies filled in (what is given wins):
    code_dim = LFQ_BITS (16, LFQUIAD's) and one code per sign pattern of its bits, 2**code_dim codes."""
    if model_overrides.get("quantizer") != "lfq":
        return model_overrides
    return {**lfq_sizes(model_overrides.get("code_dim", LFQ_BITS)), **model_overrides}


@dataclass
class TrainConfig:
    """The autoencoder's training loop (progressive budget learning, Sec. III-B.2)."""
    epochs: int = setting(10, "training epochs")
    batch_size: int = setting(16, "images per training step")
    lr: float = setting(1e-3, "learning rate")
    lr_schedule: str = setting("cosine", "learning rate over training: constant, or cosine from lr down to "
                               "LR_FLOOR·lr at the last step", choices=("constant", "cosine"))
    lambda_max: float = setting(1.25, "terminal budget weight λmax (paper: best around 1.25, Fig. 5)")
    schedule: str = setting("linear", "λ schedule (Table II)", choices=("constant", "cosine", "linear"))
    disc_weight: float = setting(0.1, "adversarial weight, times VQGAN's adaptive factor")
    disc_start: float = setting(0.5, "fraction of training before the discriminator joins")
    augment: bool = setting(True, "random flips and colour jitter, as in the paper")
    feature_noise: float = setting(0.0, "feature backbone only: Gaussian noise on the standardized input features")
    restore_anomalies: bool = setting(False, "LFQUIAD/DRÆM: train on inputs with synthetic anomalies to rebuild "
                                      "the normal image")
    ssim_weight: float = setting(0.5, "with restore_anomalies: β₁ of LFQUIAD's Eq. 2, the reconstruction loss "
                                 "(1-β₁)·MSE + β₁·(1-SSIM) (the paper fixes only α₁+β₁=1)")
    router_objective: str = setting("margin", "bank: what the router is trained on besides the budget: distance "
                                    "(keep the routed distance of normal patches low) or margin (separate synthetic "
                                    "anomalies pasted into training images from normal patches)",
                                    choices=("distance", "margin"))
    painted_images: int = setting(256, "bank, router_objective margin: training images given a synthetic anomaly")
    eval_every: int = setting(0, "score the run's test split (S_recon, no prior) every this many epochs and at "
                              "the end into history.json: a learning curve, never used to pick a model (0: off)")
    seed: int = setting(0, "random seed of the data, the weights and training")
    amp: bool = setting(True, "mixed precision, used only where CUDA is present")
    num_workers: int = setting(0, "data-loading worker processes")

    def __post_init__(self):
        check_numbers(self, positive=("lr",))
        check_lr(self.lr)
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        if not 0 <= self.disc_start <= 1 or self.disc_weight < 0:
            raise ValueError(f"disc_start must be in [0, 1] and disc_weight >= 0, "
                             f"got {self.disc_start}, {self.disc_weight}")
        if self.lambda_max < 0 or self.feature_noise < 0 or self.num_workers < 0:
            raise ValueError(f"lambda_max, feature_noise and num_workers must be >= 0, got {self.lambda_max}, "
                             f"{self.feature_noise}, {self.num_workers}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")
        check_at_most(self, MAX_STEPS, ("epochs",))
        if self.painted_images < 1:
            raise ValueError(f"painted_images must be >= 1, got {self.painted_images}")
        if not 0 <= self.ssim_weight <= 1 or self.eval_every < 0:
            raise ValueError(f"ssim_weight must be in [0, 1] and eval_every >= 0, got {self.ssim_weight}, "
                             f"{self.eval_every}")


@dataclass
class PriorConfig:
    """The Budget Prior Transformer (Sec. III-C.1): one block over the coarse budget map."""
    dim: int = setting(64, "width of the transformer")
    heads: int = setting(4, "attention heads")
    steps: int = setting(400, "training steps")
    batch_size: int = setting(64, "budget maps per step")
    lr: float = setting(1e-3, "learning rate")
    mask_ratio: tuple = setting((0.1, 0.5), "each sequence masks a random share in this range")
    dropout: float = setting(0.1, "dropout")

    def __post_init__(self):
        check_numbers(self, positive=("lr",), at_least_one=("dim", "heads", "steps", "batch_size"))
        check_lr(self.lr)
        check_at_most(self, MAX_STEPS, ("steps",))
        if self.dim % self.heads:
            raise ValueError(f"heads must divide the prior's width dim {self.dim}, got heads {self.heads}")
        if len(self.mask_ratio) != 2 or not 0 <= self.mask_ratio[0] <= self.mask_ratio[1] <= 1:
            raise ValueError(f"mask_ratio must be two numbers low <= high in [0, 1], got {tuple(self.mask_ratio)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class HeadConfig:
    """LFQUIAD's discriminative subnetwork (Sec. 3.3): a segmentation head trained after the
    autoencoder on synthetic anomalies, whose map is the LFQUIAD score (Sec. 3.5)."""
    enabled: bool = setting(False, "then train LFQUIAD's segmentation head on synthetic anomalies "
                                   "(evaluate --scorer head)")
    steps: int = setting(1500, "training steps (longer overfits the painter's anomalies, Chapter 10)")
    batch_size: int = setting(16, "images per step")
    lr: float = setting(1e-3, "learning rate (LFQUIAD: 1e-4 for 800 epochs; a short run needs more)")
    width: int = setting(8, "channels of its first stage")

    def __post_init__(self):
        check_numbers(self, positive=("lr",))
        check_lr(self.lr)
        check_at_most(self, MAX_STEPS, ("steps",))
        if self.steps < 1 or self.batch_size < 1 or self.width < 1:
            raise ValueError("head steps, batch_size and width must be >= 1")


@dataclass
class ScoreConfig:
    """How the anomaly map is turned into pixel and image scores (Sec. III-C.2)."""
    smooth_sigma: float = setting(2.0, "Gaussian smoothing of S in pixels at 64 px (scaled with size)")
    standardize: bool = setting(False, "score each pixel against the normal training images' maps at its position "
                                       "(a book choice, chapter 7)")
    scorer: str = setting("pvqae", "pvqae: S = S_prior x S_recon (the paper); head: LFQUIAD's segmentation head "
                          "(train --head)", choices=("pvqae", "head"))
    head_sigma: float = setting(1.0, "Gaussian smoothing of the head's map in pixels at 64 px")
    route: str = setting("router", "bank: which level's distance map scores each coarse patch: the router's choice, "
                         "one fixed level (coarse, middle, fine) or the mean of the levels (ablations)",
                         choices=("router", "coarse", "middle", "fine", "mean"))
    prior_power: float = setting(1.0, "S = S_prior^γ x S_recon: 1 the paper's product, between 0 and 1 a milder "
                                 "modulation (0: the prior leaves S as it is)")
    feature_score: str = setting("recon", "feature backbone: recon (feature reconstruction error) or code (distance "
                                 "of each position's code vector z to its codebook entry)", choices=("recon", "code"))

    def __post_init__(self):
        check_numbers(self)
        if not 0 <= self.prior_power <= 4:
            raise ValueError(f"prior_power must be in [0, 4], got {self.prior_power}")
        if not (0 <= self.smooth_sigma <= MAX_SIGMA and 0 <= self.head_sigma <= MAX_SIGMA):
            raise ValueError(f"smooth_sigma and head_sigma must be in [0, {MAX_SIGMA:g}] (pixels at 64 px: more blurs "
                             f"every map flat), got {self.smooth_sigma}, {self.head_sigma}")


@dataclass
class Profile:
    """Everything a chapter or the CLI needs to size an experiment."""
    name: str
    model: ModelConfig
    train: TrainConfig
    prior: PriorConfig
    score: ScoreConfig = field(default_factory=ScoreConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    num_train: int = setting(160, "synthetic: normal training images per category")
    num_test: int = setting(120, "synthetic: test images per category")
    sweep_epochs: int = setting(4, "shorter runs for chapter sweeps (λ schedules, λmax)")

    def __post_init__(self):
        check_numbers(self, at_least_one=("num_train", "num_test", "sweep_epochs"))
        check_at_most(self, MAX_IMAGES, ("num_train", "num_test"))

    def to_dict(self) -> dict:
        return asdict(self)


def quick_profile() -> Profile:
    """CPU-friendly: 64 px, small widths, a few hundred steps."""
    return Profile("quick", ModelConfig(), TrainConfig(), PriorConfig())


def full_profile() -> Profile:
    """The paper's setting as far as one Colab GPU allows: 256 px, VQGAN-like widths."""
    return Profile(
        "full",
        ModelConfig(image_size=256, width=32, stem_mults=(1, 2), level_mults=(4, 4, 8),
                    code_dim=64, codebook_size=512, router_hidden=128),
        TrainConfig(epochs=100, batch_size=16, lr=2e-4),
        PriorConfig(dim=128, steps=3000),
        num_train=400, num_test=160, sweep_epochs=30,
    )


FEATURE_IMAGE_SIZE = 224     # the ImageNet networks' own input size; levels at strides 8/16/32 give 28/14/7 grids


def with_backbone(profile: Profile, backbone: str) -> Profile:
    """The profile's sizes for PVQAE on a frozen pyramid (``backbone`` not 'pixel', chapter 8).

    Features are extracted once per image and cached, so training does not augment (a flipped
    image would need its own features), the images are 224 px, and the small autoencoder above
    the pyramid trains for 20 epochs (quick) or 60 (full); everything else is the profile's.
    """
    if backbone == "pixel":
        return replace(profile, model=replace(profile.model, backbone="pixel"))
    quick = profile.name == "quick"
    model = replace(profile.model, backbone=backbone, image_size=FEATURE_IMAGE_SIZE, code_dim=64, codebook_size=512,
                    feature_hidden=64 if quick else 128)
    train = replace(profile.train, augment=False, epochs=20 if quick else 60, batch_size=16, lr=1e-3)
    return replace(profile, model=model, train=train)


def get_profile(name: str | None = None) -> Profile:
    """``name`` or $PVQAE_PROFILE, else ``quick``: the full profile only when asked for, never because a GPU
    is present (a Colab reader would otherwise get 256 px and 100 epochs without choosing them)."""
    name = name or os.environ.get("PVQAE_PROFILE") or "quick"
    if name == "quick":
        return quick_profile()
    if name == "full":
        return full_profile()
    raise ValueError(f"profile must be 'quick' or 'full', got {name!r}")


def get_device(name: str | None = None) -> torch.device:
    """``name`` or $PVQAE_DEVICE, else CUDA when present, else CPU."""
    name = name or os.environ.get("PVQAE_DEVICE")
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def profile_from_dict(data: dict) -> Profile:
    """Rebuild a :class:`Profile` from ``Profile.to_dict()`` (a run's recorded configuration)."""
    parts = {"model": ModelConfig, "train": TrainConfig, "prior": PriorConfig, "score": ScoreConfig,
             "head": HeadConfig}
    return Profile(**{k: (from_dict(parts[k], v) if k in parts else v) for k, v in data.items()
                      if k in {f.name for f in fields(Profile)}})


def flat_settings(config: dict) -> dict:
    """{"model": {"tau": 1.0}, "num_train": 160} -> {"model.tau": 1.0, "num_train": 160}."""
    flat = {}
    for section, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{section}.{k}": v for k, v in value.items()})
        else:
            flat[section] = value
    return flat



def from_dict(cls, data: dict):
    """Rebuild a config dataclass from ``asdict`` output, ignoring keys it does not know."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


__all__ = ["with_backbone", "FEATURE_IMAGE_SIZE", "ModelConfig", "TrainConfig", "PriorConfig", "ScoreConfig",
           "HeadConfig", "Profile", "quick_profile", "full_profile", "get_profile", "get_device", "from_dict",
           "profile_from_dict", "flat_settings", "replace"]
