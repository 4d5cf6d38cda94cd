"""MVDream's released weights, read into diffusers' classes.

The real MVDream weights circulate in the layout of the diffusers ports (``ashawkey/mvdream-sd2.1-diffusers``,
made by github.com/ashawkey/mvdream_diffusers): a pipeline folder whose ``vae/``, ``text_encoder/``,
``tokenizer/`` and ``scheduler/`` are plain diffusers and transformers parts (Stable Diffusion 2.1-base's), and
whose ``unet/`` holds the port's own ``MultiViewUNetModel``: a ``config.json`` of the original LDM arguments
(``model_channels``, ``channel_mult``, ``num_head_channels``, ``camera_dim``, ...) and weights under LDM names
(``time_embed.*``, ``camera_embed.*``, ``input_blocks.*``, ``middle_block.*``, ``output_blocks.*``, ``out.*``).

That U-Net is Stable Diffusion 2.1's plus the two changes ``mvdream.py`` makes to a ``UNet2DConditionModel``:
the camera MLP ``camera_embed`` (Linear, SiLU, Linear, added to the time embedding) is diffusers' class
embedding of type "projection", and the joint self-attention over the views has no weights of its own. So
reading the weights is a renaming, diffusers' own LDM converter for the Stable Diffusion part and two linear
layers by hand, and the port's code is not needed to run them.
"""

from __future__ import annotations

import json
from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.loaders.single_file_utils import LDM_UNET_KEY, convert_ldm_unet_checkpoint
from safetensors.torch import load_file, save_file
from transformers import CLIPTextModel, CLIPTokenizer

from .mvdream import CAMERA_WIDTH, multiview_unet
from .priors import tiny_stable_diffusion
from .runtime import get_device, quiet_loading, quiet_transformers

with quiet_transformers():
    from diffusers import StableDiffusionPipeline

PORT_UNET_CLASS = "MultiViewUNetModel"
WEIGHTS = "diffusion_pytorch_model.safetensors"
NUM_VIEWS = 4  # the released model was trained on sets of 4 views

# The port's options that UNet2DConditionModel has no counterpart for, and the one value each may take here.
_FIXED = {"dims": 2, "conv_resample": True, "use_scale_shift_norm": False, "resblock_updown": False,
          "num_classes": None, "n_embed": None, "adm_in_channels": None, "num_attention_blocks": None, "ip_dim": 0}
# Read by unet_config_from_port.
_READ = {"image_size", "in_channels", "model_channels", "out_channels", "num_res_blocks", "attention_resolutions",
         "channel_mult", "num_heads", "num_head_channels", "transformer_depth", "context_dim", "camera_dim"}
# No effect on the weights, nor on the output in eval mode: training-only switches, options the port takes and
# never reads (it always projects linearly in its transformers), and ImageDream's weight (ip_dim = 0 turns it off).
_INERT = {"dropout", "use_checkpoint", "num_heads_upsample", "legacy", "use_spatial_transformer",
          "use_linear_in_transformer", "ip_weight"}

_CAMERA_KEYS = {"camera_embed.0.weight": "class_embedding.linear_1.weight",
                "camera_embed.0.bias": "class_embedding.linear_1.bias",
                "camera_embed.2.weight": "class_embedding.linear_2.weight",
                "camera_embed.2.bias": "class_embedding.linear_2.bias"}

# A port config of a very small MultiViewUNetModel, for tests: three levels (32, 64, 64 channels; the port's
# GroupNorms have 32 groups, so no fewer), attention at the middle one only, so that both kinds of block and both
# places of an upsampler (after a resnet, after an attention) occur. context_dim is tiny_stable_diffusion's text width.
TINY_PORT_CONFIG = dict(image_size=16, in_channels=4, out_channels=4, model_channels=32, channel_mult=[1, 2, 2],
                        num_res_blocks=1, attention_resolutions=[2], num_head_channels=8, transformer_depth=1,
                        context_dim=32, camera_dim=CAMERA_WIDTH, use_checkpoint=False)

# model_index.json as the port writes it: its own U-Net class from its own module, the rest stock classes.
_PORT_INDEX = {"_class_name": "MVDreamPipeline", "_diffusers_version": diffusers.__version__,
               "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
               "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
               "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["mv_unet", PORT_UNET_CLASS],
               "vae": ["diffusers", "AutoencoderKL"]}


def unet_config_from_port(port_config: dict) -> dict:
    """The ``UNet2DConditionModel`` arguments of the port's ``MultiViewUNetModel`` config (its ``unet/config.json``).

    Level ``l`` of ``channel_mult`` has cross-attention when its downsampling ``2**l`` is in
    ``attention_resolutions``; the middle always has. diffusers' ``attention_head_dim`` is, for historical reasons,
    the number of heads per level (SD 2.1's is [5, 10, 20, 20] for 64 channels per head), so ``num_head_channels``
    becomes width // num_head_channels per level. Raises ValueError naming the key the port config has that
    diffusers cannot express, or lacks.
    """
    _check_port_keys(port_config)
    width = _count(port_config, "model_channels")
    widths = [width * mult for mult in port_config.get("channel_mult", (1, 2, 4, 8))]  # the port's default
    resolutions = port_config.get("attention_resolutions")
    if not isinstance(resolutions, (list, tuple)):
        raise ValueError(f"port_config: expected attention_resolutions to be a list of downsampling factors, "
                         f"got {resolutions!r}")
    attends = [2 ** level in resolutions for level in range(len(widths))]
    return dict(
        sample_size=_count(port_config, "image_size"), in_channels=_count(port_config, "in_channels"),
        out_channels=_count(port_config, "out_channels"), block_out_channels=tuple(widths),
        layers_per_block=_count(port_config, "num_res_blocks"),
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attends),
        mid_block_type="UNetMidBlock2DCrossAttn",
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)),
        attention_head_dim=tuple(_heads(w, port_config) for w in widths),
        transformer_layers_per_block=_count(port_config, "transformer_depth", 1),
        cross_attention_dim=_count(port_config, "context_dim"),
        use_linear_projection=True,  # the port's proj_in / proj_out are nn.Linear, as in SD 2.x
        norm_num_groups=32, norm_eps=1e-5, act_fn="silu",  # the port's GroupNorm(32, ·) everywhere
        flip_sin_to_cos=True, freq_shift=0,  # the port's sinusoid: [cos, sin] of t·10000^(-i/half)
        class_embed_type="projection", projection_class_embeddings_input_dim=_count(port_config, "camera_dim"))


def _check_port_keys(port_config: dict) -> None:
    name = port_config.get("_class_name", PORT_UNET_CLASS)  # "_" keys are diffusers' bookkeeping
    if name != PORT_UNET_CLASS:
        raise ValueError(f"port_config: expected _class_name {PORT_UNET_CLASS!r} (the port's U-Net), got {name!r}")
    for key in port_config:
        if not key.startswith("_") and key not in _READ | _INERT | _FIXED.keys():
            raise ValueError(f"port_config: expected only {PORT_UNET_CLASS}'s arguments, got the unknown key {key!r}")
    for key, value in _FIXED.items():
        if port_config.get(key, value) != value:
            raise ValueError(f"port_config: expected {key}={value!r} (diffusers' U-Net has no other), "
                             f"got {key}={port_config[key]!r}")


def _count(port_config: dict, key: str, default=None) -> int:
    value = port_config.get(key, default)
    if isinstance(value, (list, tuple)):  # a per-level count: diffusers' converter takes one for all levels
        if len(set(value)) != 1:
            raise ValueError(f"port_config: expected {key} to be the same at every level, got {value!r}")
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"port_config: expected {key} to be a positive integer, got {value!r}")
    return value


def _heads(width: int, port_config: dict) -> int:
    """Heads of an attention layer ``width`` channels wide: the port fixes the channels per head, or else the count."""
    key = "num_head_channels" if port_config.get("num_head_channels", -1) != -1 else "num_heads"
    value = port_config.get(key, -1)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or width % value:
        raise ValueError(f"port_config: expected {key} to be a positive divisor of every level's width ({width} "
                         f"here; num_heads counts only where num_head_channels is -1), got {value!r}")
    return width // value if key == "num_head_channels" else value


def unet_state_dict_from_port(state_dict: dict, port_config: dict) -> dict:
    """The port's U-Net weights (LDM names) under ``UNet2DConditionModel``'s names, the same tensors.

    diffusers' converter renames the Stable Diffusion part; ``camera_embed.{0,2}`` become
    ``class_embedding.linear_{1,2}``. Raises ValueError naming any port key left unused, diffusers parameter
    left unfilled, or shape that does not fit.
    """
    config = unet_config_from_port(port_config)
    # The converter reads a whole LDM checkpoint, where the U-Net's keys carry this prefix; of the config it needs
    # only the resnets per level (with our class_embed_type it would look for SD's label_emb instead of the camera).
    converted = convert_ldm_unet_checkpoint({LDM_UNET_KEY + key: value for key, value in state_dict.items()},
                                            {"layers_per_block": config["layers_per_block"]})
    converted.update({new: state_dict[old] for old, new in _CAMERA_KEYS.items() if old in state_dict})
    _check_one_to_one(state_dict, converted, config)
    return converted


def _check_one_to_one(state_dict: dict, converted: dict, config: dict) -> None:
    with torch.device("meta"):  # names and shapes only: no memory, no initialisation
        expected = UNet2DConditionModel(**config).state_dict()
    used = {id(value) for value in converted.values()}  # the converter renames, never copies a tensor
    problems = {
        "port keys left unused": [key for key, value in state_dict.items() if id(value) not in used],
        "diffusers parameters missing": [key for key in expected if converted.get(key) is None],
        "keys diffusers' U-Net does not have": [key for key in converted if key not in expected],
        "shapes that do not fit": [f"{key} {list(converted[key].shape)} (expected {list(value.shape)})"
                                   for key, value in expected.items()
                                   if converted.get(key) is not None and converted[key].shape != value.shape]}
    found = "; ".join(f"{len(keys)} {what}: {', '.join(keys[:4])}{', ...' * (len(keys) > 4)}"
                      for what, keys in problems.items() if keys)
    if found:
        raise ValueError(f"state_dict: expected the port's U-Net weights to fill diffusers' one to one, got {found}")


def load_port_unet(folder, dtype: torch.dtype = torch.float32) -> UNet2DConditionModel:
    """The multi-view ``UNet2DConditionModel`` (``mvdream.multiview_unet``, 4 views) of a port folder's ``unet/``."""
    unet_folder = Path(folder) / "unet"
    port_config = json.loads((unet_folder / "config.json").read_text())
    weights = unet_state_dict_from_port(load_file(str(unet_folder / WEIGHTS)), port_config)
    with torch.device("meta"):  # no random initialisation of ~865M weights about to be replaced
        unet = UNet2DConditionModel(**unet_config_from_port(port_config))
    unet.load_state_dict({key: value.to(dtype) for key, value in weights.items()}, strict=True, assign=True)
    return multiview_unet(unet.eval(), NUM_VIEWS)  # has the camera embedding: only installs the processors


def load_mvdream(folder, device=None, dtype: torch.dtype = torch.float32) -> StableDiffusionPipeline:
    """A ``StableDiffusionPipeline`` of a port folder's parts, its U-Net the multi-view one, on ``device``.

    The port's own pipeline class is not needed: its vae, text encoder, tokenizer and scheduler are stock
    classes, and the multi-view SDS code drives a ``StableDiffusionPipeline`` (cameras go in as ``class_labels``).
    """
    folder, kwargs = str(folder), dict(local_files_only=True)
    with quiet_loading():  # each part in its dtype as it loads: pipe.to(dtype) would warn about fp32 modules
        parts = dict(vae=AutoencoderKL.from_pretrained(folder, subfolder="vae", dtype=dtype, **kwargs),
                     text_encoder=CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype,
                                                                **kwargs),
                     tokenizer=CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", **kwargs),
                     scheduler=DDIMScheduler.from_pretrained(folder, subfolder="scheduler", **kwargs))
    pipe = StableDiffusionPipeline(**parts, unet=load_port_unet(folder, dtype), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device or get_device())


def save_tiny_port_checkpoint(folder, seed: int = 0) -> Path:
    """Write a tiny pipeline folder in the port's layout: random weights under the port's names and shapes
    (``TINY_PORT_CONFIG``), and ``tiny_stable_diffusion``'s (random) vae, text encoder, tokenizer and scheduler. Returns the folder."""
    folder = Path(folder)
    stock = tiny_stable_diffusion(seed, image_size=32)  # 32x32 images, 16x16 latents: image_size 16
    with quiet_loading():
        for name in ("vae", "text_encoder", "tokenizer", "scheduler"):
            getattr(stock, name).save_pretrained(folder / name)
    (folder / "unet").mkdir(parents=True, exist_ok=True)
    config = {"_class_name": PORT_UNET_CLASS, "_diffusers_version": diffusers.__version__, **TINY_PORT_CONFIG}
    (folder / "unet" / "config.json").write_text(json.dumps(config, indent=2))
    generator = torch.Generator().manual_seed(seed)
    save_file({key: 0.1 * torch.randn(shape, generator=generator)
               for key, shape in port_unet_shapes(TINY_PORT_CONFIG).items()}, str(folder / "unet" / WEIGHTS))
    (folder / "model_index.json").write_text(json.dumps(_PORT_INDEX, indent=2))
    return folder


def port_unet_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every weight of the port's ``MultiViewUNetModel`` and its shape, walked as the port builds its modules
    (``mvdream/models.py``, ``mvdream/attention.py``): a description of the layout independent of the converter,
    for writing checkpoints to test it with. Takes an int ``num_res_blocks`` and heads that fill each width."""
    shapes, base, context = {}, config["model_channels"], config["context_dim"]
    embed = 4 * base  # the time (and camera) embedding's width

    def linear(name, n_in, n_out, bias=True):
        shapes[f"{name}.weight"] = (n_out, n_in)
        if bias:
            shapes[f"{name}.bias"] = (n_out,)

    def conv(name, n_in, n_out, kernel=3):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (n_out, n_in, kernel, kernel), (n_out,)

    def norm(name, n):  # GroupNorm or LayerNorm
        shapes[f"{name}.weight"] = shapes[f"{name}.bias"] = (n,)

    def res_block(name, n_in, n_out):  # ResBlock: in_layers (norm, SiLU, conv), emb_layers (SiLU, linear), out_layers
        norm(f"{name}.in_layers.0", n_in)
        conv(f"{name}.in_layers.2", n_in, n_out)
        linear(f"{name}.emb_layers.1", embed, n_out)
        norm(f"{name}.out_layers.0", n_out)
        conv(f"{name}.out_layers.3", n_out, n_out)  # out_layers: norm, SiLU, dropout, conv
        if n_in != n_out:
            conv(f"{name}.skip_connection", n_in, n_out, kernel=1)

    def transformer(name, n):  # SpatialTransformer3D: heads x head width = n
        norm(f"{name}.norm", n)
        linear(f"{name}.proj_in", n, n)
        linear(f"{name}.proj_out", n, n)
        for depth in range(config.get("transformer_depth", 1)):
            block = f"{name}.transformer_blocks.{depth}"
            for attn, source in (("attn1", n), ("attn2", context)):  # self-attention, then cross-attention to text
                linear(f"{block}.{attn}.to_q", n, n, bias=False)
                linear(f"{block}.{attn}.to_k", source, n, bias=False)
                linear(f"{block}.{attn}.to_v", source, n, bias=False)
                linear(f"{block}.{attn}.to_out.0", n, n)
            linear(f"{block}.ff.net.0.proj", n, 8 * n)  # GEGLU: a value and a gate, 4n wide each
            linear(f"{block}.ff.net.2", 4 * n, n)
            for i in (1, 2, 3):
                norm(f"{block}.norm{i}", n)

    for name, n_in in (("time_embed", base), ("camera_embed", config["camera_dim"])):  # Linear, SiLU, Linear
        linear(f"{name}.0", n_in, embed)
        linear(f"{name}.2", embed, embed)
    conv("input_blocks.0.0", config["in_channels"], base)
    widths = [base * mult for mult in config["channel_mult"]]
    attends = [2 ** level in config["attention_resolutions"] for level in range(len(widths))]
    skips, width, block = [base], base, 1  # the widths the decoder's resnets get concatenated
    for level, out in enumerate(widths):
        for _ in range(config["num_res_blocks"]):
            res_block(f"input_blocks.{block}.0", width, out)
            width = out
            if attends[level]:
                transformer(f"input_blocks.{block}.1", width)
            skips, block = skips + [width], block + 1
        if level < len(widths) - 1:
            conv(f"input_blocks.{block}.0.op", width, width)  # Downsample: a stride-2 conv
            skips, block = skips + [width], block + 1
    res_block("middle_block.0", width, width)
    transformer("middle_block.1", width)
    res_block("middle_block.2", width, width)
    block = 0
    for level in reversed(range(len(widths))):
        for i in range(config["num_res_blocks"] + 1):
            res_block(f"output_blocks.{block}.0", width + skips.pop(), widths[level])
            width = widths[level]
            if attends[level]:
                transformer(f"output_blocks.{block}.1", width)
            if level and i == config["num_res_blocks"]:  # Upsample: nearest, then a conv; after the attention if any
                conv(f"output_blocks.{block}.{1 + attends[level]}.conv", width, width)
            block += 1
    norm("out.0", width)
    conv("out.2", width, config["out_channels"])
    return shapes


__all__ = ["NUM_VIEWS", "PORT_UNET_CLASS", "TINY_PORT_CONFIG", "load_mvdream", "load_port_unet",
           "port_unet_shapes", "save_tiny_port_checkpoint", "unet_config_from_port", "unet_state_dict_from_port"]
