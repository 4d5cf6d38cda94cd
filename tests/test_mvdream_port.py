"""MVDream's port layout read into diffusers: a tiny checkpoint written from the port's module structure, converted
one to one, its embeddings against the port's formulas by hand, and the port's cameras against hand-built matrices."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file

from minidiff3d.mvdream import joined_views, port_cameras, relative_cameras
from minidiff3d.mvdream_port import (TINY_PORT_CONFIG, load_mvdream, load_port_unet, port_unet_shapes,
                                     save_tiny_port_checkpoint, unet_config_from_port, unet_state_dict_from_port)

# The port's unet/config.json of MVDream sd-v2.1-base-4view (the original's sd-v2-base.yaml, as the port converts it).
SD21_PORT_CONFIG = dict(_class_name="MultiViewUNetModel", image_size=32, in_channels=4, out_channels=4,
                        model_channels=320, attention_resolutions=[4, 2, 1], num_res_blocks=2,
                        channel_mult=[1, 2, 4, 4], num_head_channels=64, transformer_depth=1, context_dim=1024,
                        use_checkpoint=False, camera_dim=16)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_port_checkpoint(tmp_path_factory.mktemp("mvdream_port"))


@pytest.fixture(scope="module")
def port(folder):
    """The port's own files: ``(config, state_dict)`` of ``unet/``."""
    unet_folder = folder / "unet"
    return (json.loads((unet_folder / "config.json").read_text()),
            load_file(str(unet_folder / "diffusion_pytorch_model.safetensors")))


@pytest.fixture(scope="module")
def unet(folder):
    return load_port_unet(folder)


def test_tiny_checkpoint_has_the_port_layout(folder, port):
    index = json.loads((folder / "model_index.json").read_text())
    assert index["unet"] == ["mv_unet", "MultiViewUNetModel"] and index["vae"] == ["diffusers", "AutoencoderKL"]
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (folder / part).is_dir()
    config, state = port
    assert config["_class_name"] == "MultiViewUNetModel" and config["camera_dim"] == 16
    assert {key.split(".")[0] for key in state} == {"time_embed", "camera_embed", "input_blocks", "middle_block",
                                                    "output_blocks", "out"}


def test_every_port_key_fills_one_diffusers_parameter(port):
    config, state = port
    converted = unet_state_dict_from_port(state, config)
    expected = UNet2DConditionModel(**unet_config_from_port(config)).state_dict()
    assert set(converted) == set(expected) and len(converted) == len(state)
    # a few renamings by hand, from the port's module structure: level 0 plain, level 1 attends, level 2 plain
    for ours, theirs in [("conv_in.weight", "input_blocks.0.0.weight"), ("conv_out.bias", "out.2.bias"),
                         ("time_embedding.linear_2.weight", "time_embed.2.weight"),
                         ("down_blocks.0.downsamplers.0.conv.weight", "input_blocks.2.0.op.weight"),
                         ("down_blocks.1.attentions.0.proj_in.weight", "input_blocks.3.1.proj_in.weight"),
                         ("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                          "middle_block.1.transformer_blocks.0.attn2.to_k.weight"),
                         ("mid_block.resnets.1.conv1.weight", "middle_block.2.in_layers.2.weight"),
                         ("up_blocks.0.upsamplers.0.conv.weight", "output_blocks.1.1.conv.weight"),  # after a resnet
                         ("up_blocks.1.upsamplers.0.conv.weight", "output_blocks.3.2.conv.weight"),  # after attention
                         ("up_blocks.2.resnets.1.conv_shortcut.weight", "output_blocks.5.0.skip_connection.weight"),
                         ("class_embedding.linear_1.weight", "camera_embed.0.weight")]:
        assert converted[ours] is state[theirs], ours


def test_loaded_unet_is_multiview_and_runs_on_four_views(unet):
    assert not any(p.is_meta for p in unet.parameters()) and unet.dtype == torch.float32
    assert joined_views(unet) == 4 and unet.config.class_embed_type == "projection"
    g = torch.Generator().manual_seed(0)
    latents, text = torch.randn(4, 4, 16, 16, generator=g), torch.randn(4, 7, 32, generator=g)
    t, cameras = torch.tensor([500] * 4), port_cameras(15.0, [0.0, 90.0, 180.0, 270.0])
    with torch.no_grad():
        out = unet(latents, t, encoder_hidden_states=text, class_labels=cameras).sample
        changed = latents.clone()
        changed[3] += 1.0
        other = unet(changed, t, encoder_hidden_states=text, class_labels=cameras).sample
    assert out.shape == (4, 4, 16, 16) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], other[0], atol=1e-4)  # view 0 attends to view 3


def test_camera_embedding_is_the_port_mlp(unet, port):
    _, state = port
    cameras = torch.randn(5, 16, generator=torch.Generator().manual_seed(1))
    hidden = F.silu(cameras @ state["camera_embed.0.weight"].T + state["camera_embed.0.bias"])
    by_hand = hidden @ state["camera_embed.2.weight"].T + state["camera_embed.2.bias"]
    with torch.no_grad():
        assert torch.allclose(unet.class_embedding(cameras), by_hand, atol=1e-5)


def test_time_embedding_is_the_port_sinusoid_and_mlp(unet, port):
    config, state = port
    t, half = torch.tensor([0.0, 1.0, 37.0, 999.0]), config["model_channels"] // 2
    angles = t[:, None] * torch.exp(-math.log(10000.0) * torch.arange(half) / half)
    sinusoid = torch.cat([torch.cos(angles), torch.sin(angles)], -1)  # the port's order: cosines first
    hidden = F.silu(sinusoid @ state["time_embed.0.weight"].T + state["time_embed.0.bias"])
    by_hand = hidden @ state["time_embed.2.weight"].T + state["time_embed.2.bias"]
    with torch.no_grad():
        assert torch.allclose(unet.time_embedding(unet.time_proj(t)), by_hand, atol=1e-5)


def test_load_mvdream_gives_a_pipeline_that_encodes_prompts(folder):
    pipe = load_mvdream(folder, device="cpu")
    assert isinstance(pipe, StableDiffusionPipeline) and joined_views(pipe.unet) == 4
    embeds, negative = pipe.encode_prompt("a red cube", "cpu", 1, True)
    assert embeds.shape[0] == 1 and embeds.shape[-1] == pipe.unet.config.cross_attention_dim
    assert negative.shape == embeds.shape and torch.isfinite(embeds).all()


def test_sd21_port_config_gives_sd21_base_unet():
    config = unet_config_from_port(SD21_PORT_CONFIG)
    # stabilityai/stable-diffusion-2-1-base's unet/config.json, and the camera
    assert config["block_out_channels"] == (320, 640, 1280, 1280) and config["layers_per_block"] == 2
    assert config["attention_head_dim"] == (5, 10, 20, 20) and config["cross_attention_dim"] == 1024
    assert config["down_block_types"] == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
    assert config["up_block_types"] == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
    assert config["use_linear_projection"] and config["sample_size"] == 32
    assert config["class_embed_type"] == "projection" and config["projection_class_embeddings_input_dim"] == 16


def test_real_size_layout_converts_one_to_one():
    # the released model's ~865M weights as shapes only (meta tensors): every one of its keys finds its place
    state = {key: torch.empty(shape, device="meta") for key, shape in port_unet_shapes(SD21_PORT_CONFIG).items()}
    converted = unet_state_dict_from_port(state, SD21_PORT_CONFIG)
    assert len(converted) == len(state) and sum(v.numel() for v in converted.values()) > 860e6
    assert converted["down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight"].shape == (1280, 1024)


@pytest.mark.parametrize("change, key", [
    ({"use_scale_shift_norm": True}, "use_scale_shift_norm"), ({"ip_dim": 16}, "ip_dim"),
    ({"num_classes": 10}, "num_classes"), ({"unknown_option": 1}, "unknown_option"),
    ({"camera_dim": None}, "camera_dim"),
    ({"num_head_channels": 12}, "num_head_channels"), ({"attention_resolutions": None}, "attention_resolutions"),
    ({"num_res_blocks": [1, 2, 1]}, "num_res_blocks"), ({"_class_name": "UNet2DConditionModel"}, "_class_name")])
def test_configs_diffusers_cannot_express_are_named(change, key):
    with pytest.raises(ValueError, match=key):
        unet_config_from_port({**TINY_PORT_CONFIG, **change})


def test_leftover_and_missing_weights_are_named(port):
    config, state = port
    with pytest.raises(ValueError, match=r"unused: label_emb\.0\.0\.weight"):
        unet_state_dict_from_port({**state, "label_emb.0.0.weight": torch.zeros(3)}, config)
    with pytest.raises(ValueError, match=r"missing: class_embedding\.linear_2\.bias"):
        unet_state_dict_from_port({k: v for k, v in state.items() if k != "camera_embed.2.bias"}, config)
    with pytest.raises(ValueError, match=r"fit: conv_in\.weight \[32, 4, 1, 1\]"):
        unet_state_dict_from_port({**state, "input_blocks.0.0.weight": torch.zeros(32, 4, 1, 1)}, config)


def test_port_cameras_by_hand():
    r = math.sqrt(3) / 2
    # azimuth 0, level: on -y (Blender's front view) looking along +y, x to the right, z up
    front = torch.tensor([[1.0, 0, 0, 0], [0, 0, -1, -1], [0, 1, 0, 0], [0, 0, 0, 1]])
    # azimuth 90, 30° up: on +x, looking down at the centre; right is +y, up leans back towards -x
    side = torch.tensor([[0.0, -0.5, r, r], [1, 0, 0, 0], [0, r, 0.5, 0.5], [0, 0, 0, 1]])
    assert torch.allclose(port_cameras(0.0, 0.0), front.flatten(), atol=1e-6)
    assert torch.allclose(port_cameras(30.0, 90.0), side.flatten(), atol=1e-6)
    both = port_cameras(torch.tensor([0.0, 30.0]), torch.tensor([0.0, 90.0]))
    assert both.shape == (2, 16) and torch.allclose(both, torch.stack([front.flatten(), side.flatten()]), atol=1e-6)


def test_port_cameras_are_absolute_and_offset_from_relative_cameras():
    views = torch.tensor([0.0, 90.0, 180.0, 270.0])
    assert port_cameras(15.0, views).shape == (4, 16)
    assert port_cameras(15.0, views[None].repeat(2, 1)).shape == (2, 4, 16)
    assert not torch.allclose(port_cameras(15.0, views + 40), port_cameras(15.0, views), atol=1e-3)  # not relative
    assert torch.allclose(relative_cameras(15.0, views + 40), port_cameras(15.0, views + 90), atol=1e-5)
    with pytest.raises(ValueError, match="broadcast"):
        port_cameras(torch.zeros(3), views)
    with pytest.raises(ValueError, match="azimuth"):
        port_cameras(0.0, float("nan"))
