"""Loading backbone weights that the user already has: a local file, or timm's download cache. Never downloads.

Files are read with ``safetensors`` (``.safetensors``) or ``torch.load(weights_only=True)`` (anything else), and
passed through the timm model family's own ``checkpoint_filter_fn`` when it has one (timm converts OpenAI CLIP,
DINOv2 and SAM layouts and resamples position embeddings there).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

TIMM_CACHE = "timm"
"""Value of ``pretrained`` that asks for timm's pretrained weights from the local cache."""


class MissingWeightsError(FileNotFoundError):
    """The requested pretrained weights are not on this machine."""


def _download_hint(timm_name: str) -> str:
    return (
        f"on a machine with internet access run `python -c \"import timm; timm.create_model('{timm_name}', "
        "pretrained=True)\"` (it fills the Hugging Face / torch hub cache, which you can copy here), "
        "or pass the path of a weight file as pretrained=PATH"
    )


def cached_timm_weights(timm_name: str) -> Path | None:
    """The file of timm's default pretrained weights for ``timm_name`` if it is already cached, else None."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(timm_name)
    if cfg is None:
        return None
    if cfg.file and Path(cfg.file).is_file():
        return Path(cfg.file)
    if cfg.hf_hub_id:
        repo_id, _, revision = cfg.hf_hub_id.partition("@")
        names = [n for n in (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin") if n]
        for name in names:
            found = try_to_load_from_cache(repo_id, name, revision=revision or None)
            if isinstance(found, str):
                return Path(found)
    if isinstance(cfg.url, str) and cfg.url:  # timm also allows a (url, ...) tuple, which torch.hub does not cache
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg.url).name
        if candidate.is_file():
            return candidate
    return None


def resolve_weights(timm_name: str, pretrained: str | Path | None) -> Path | None:
    """Map the user's ``pretrained`` choice to a weight file (None: random initialisation).

    ``pretrained`` is None, :data:`TIMM_CACHE` (``"timm"``: timm's weights, from the local cache only) or a path.
    """
    if pretrained is None:
        return None
    if str(pretrained) == TIMM_CACHE:
        found = cached_timm_weights(timm_name)
        if found is None:
            raise MissingWeightsError(
                f"timm weights of {timm_name!r} are not in the local cache; {_download_hint(timm_name)}"
            )
        return found
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"weight file {str(path)!r} does not exist; {_download_hint(timm_name)}")
    return path


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a checkpoint file, unwrapped from ``{"state_dict"|"model": ...}`` and a ``module.`` prefix."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path), device="cpu")
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, Tensor)}


def load_weights(model: nn.Module, path: Path) -> None:
    """Load ``path`` into a timm ``model``; every parameter and buffer of the model must be found in the file.

    Keys of the file the model does not have (a classifier head, layers a features-only model dropped) are ignored.
    """
    state = read_state_dict(path)
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    try:
        missing, _ = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"weights in {path} do not fit {type(model).__name__}: {err}") from err
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(f"weights in {path} lack {len(missing)} tensor(s) of {type(model).__name__}: {shown}")
