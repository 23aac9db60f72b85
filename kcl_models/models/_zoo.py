"""Where the weights of each registered ``arch.tag`` variant are, and only what is true about it.

A variant is one of:

- ``bundled``: its weights ship inside the package (``kcl_models/weights/<variant>/model.safetensors``
  with the folder's ``config.json``); its pretrained_cfg has ``file=`` (timm loads it with no network)
  and the ``hf_hub_id`` it will be published under;
- ``published``: its Hub repo exists; the pretrained_cfg has ``hf_hub_id`` (none yet);
- ``planned``: no weights anywhere; the pretrained_cfg has no weight source, so
  ``timm.list_models(..., pretrained=True)`` does not list it, and ``pretrained=True`` raises
  :class:`PretrainedWeightsUnavailable` with the recipe that produces the weights.

hub/manifest.yaml records the same facts for the zoo table (tests/models/test_zoo.py keeps the two
in agreement: status and recipe of every variant).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["WEIGHTS_DIR", "HUB_ORG", "PretrainedWeightsUnavailable", "Recipe", "ZooEntry", "hub_id",
           "weights_fields", "zoo_entry", "planned_message", "ensure_hub_weights"]

HUB_ORG = "kcl-models"
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
BCL_RELEASE = "https://github.com/FlamieZhu/Balanced-Contrastive-Learning"
_HUB_PROBE_TIMEOUT_S = 5.0


class PretrainedWeightsUnavailable(RuntimeError):
    """``pretrained=True`` cannot get the variant's weights: planned (none exist yet), or its Hub repo
    is missing or unreachable and not in the cache."""


def hub_id(variant: str) -> str:
    """Hub repo of a registered ``arch.tag`` variant: ``kcl-models/<arch>.<tag>``."""
    return f"{HUB_ORG}/{variant}"


@dataclass(frozen=True)
class Recipe:
    """How a variant's weights are produced: ``kind='train'`` with a config of this project, or
    ``kind='convert'`` of the authors' checkpoint with a ``hub/convert.py`` layout."""

    kind: str
    config: str | None = None      # configs/<recipe>.yaml (train)
    layout: str | None = None      # kcl-stage1 | kcl-stage2 | bcl (convert)

    def __post_init__(self) -> None:
        if self.kind == "train" and not self.config:
            raise ValueError("a 'train' recipe needs config=")
        if self.kind == "convert" and not self.layout:
            raise ValueError("a 'convert' recipe needs layout=")
        if self.kind not in ("train", "convert"):
            raise ValueError(f"recipe kind must be 'train' or 'convert', got {self.kind!r}")

    def instructions(self, variant: str) -> str:
        if self.kind == "train":
            return (f"train them with `python train.py --config {self.config} --output_dir <out>` (in a clone of "
                    f"kcl-models), then load timm.create_model('local-dir:<out>/model', pretrained=True)")
        where = f" ({BCL_RELEASE})" if self.layout == "bcl" else ""
        return (f"convert the authors' checkpoint{where} with `python hub/convert.py {self.layout} "
                f"--arch {variant} --checkpoint <checkpoint file> --out <folder>`, then load "
                f"timm.create_model('local-dir:<folder>', pretrained=True)")


@dataclass(frozen=True)
class ZooEntry:
    variant: str
    status: str                    # bundled | published | planned
    repo: str                      # the Hub repo it has or will have
    recipe: Recipe
    file: Path | None = None       # bundled weights


_ENTRIES: dict[str, ZooEntry] = {}


def weights_fields(variant: str, recipe: Recipe, bundled: bool = False, published: bool = False) -> dict[str, Any]:
    """The weight-source fields of ``variant``'s pretrained_cfg, recording its zoo status.

    A bundled variant whose file is missing from this installation counts as planned (nothing to
    load), so the registry never offers weights it cannot deliver."""
    file = WEIGHTS_DIR / variant / "model.safetensors"
    if bundled and file.is_file():
        entry = ZooEntry(variant, "bundled", hub_id(variant), recipe, file)
        fields: dict[str, Any] = dict(file=str(file), hf_hub_id=hub_id(variant))
    elif published:
        entry = ZooEntry(variant, "published", hub_id(variant), recipe)
        fields = dict(hf_hub_id=hub_id(variant))
    else:
        entry = ZooEntry(variant, "planned", hub_id(variant), recipe)
        fields = {}
    _ENTRIES[variant] = entry
    return fields


def zoo_entry(name: str) -> ZooEntry:
    """Zoo status of a registered ``arch.tag`` (an untagged name means its default tag)."""
    if name in _ENTRIES:
        return _ENTRIES[name]
    import timm
    cfg = timm.models.get_pretrained_cfg(name)
    key = f"{name.split('.')[0]}.{cfg.tag}" if cfg is not None and cfg.tag else name
    if key not in _ENTRIES:
        raise KeyError(f"'{name}' is not a kcl-models variant; see kcl_models.list_kcl_models(include_tags=True)")
    return _ENTRIES[key]


def planned_message(variant: str) -> str:
    import timm
    entry = zoo_entry(variant)
    have = timm.list_models(["*_kcl", "*_bcl"], pretrained=True)
    return (f"pretrained weights for '{variant}' do not exist yet (planned: none ship with kcl-models and its Hub "
            f"repo '{entry.repo}' is not published). To get them, {entry.recipe.instructions(variant)}; or pass "
            f"pretrained=False. Variants with weights: {', '.join(have) if have else 'none'}")


def _split_revision(repo: str) -> tuple[str, str | None]:
    repo_id, _, revision = repo.partition("@")
    return repo_id, revision or None


def _cached(repo_id: str, revision: str | None, filenames: tuple[str, ...]) -> bool:
    from huggingface_hub import try_to_load_from_cache
    return any(isinstance(try_to_load_from_cache(repo_id, f, revision=revision), str) for f in filenames)


def ensure_hub_weights(repo: str, filenames: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")):
    """Fail fast instead of huggingface_hub's retries (23-57 s measured with no network) when a Hub repo's
    weights cannot be had. Returns a context manager to load under.

    - ``HF_HUB_OFFLINE``: nothing to check, huggingface_hub answers from the cache at once;
    - else one metadata request with a short timeout: repo found -> load normally; repo missing ->
      :class:`PretrainedWeightsUnavailable` (unless cached: load from the cache); Hub unreachable ->
      load from the cache with offline mode switched on for this load, or raise if not cached.
    """
    import contextlib

    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return contextlib.nullcontext()
    repo_id, revision = _split_revision(repo)
    cached = _cached(repo_id, revision, filenames)
    try:
        HfApi().model_info(repo_id, revision=revision, timeout=_HUB_PROBE_TIMEOUT_S)
        return contextlib.nullcontext()
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        problem = (f"Hub repo '{repo_id}' does not exist or is private (HTTP {status})" if status in (401, 403, 404)
                   else f"the Hub answered HTTP {status} for '{repo_id}'")
    except Exception as err:  # noqa: BLE001 - connection, DNS, proxy and timeout errors of any HTTP stack
        problem = (f"the Hub ({constants.ENDPOINT}) is unreachable ({type(err).__name__}: "
                   f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no detail'})")
    if cached:
        return _offline()
    raise PretrainedWeightsUnavailable(
        f"cannot get the weights of '{repo}': {problem}, and they are not in the HF cache "
        f"({constants.HF_HUB_CACHE}). Online: `hf download {repo_id}` fills the cache; offline: copy the repo "
        f"folder and load it with timm.create_model('local-dir:<folder>', pretrained=True)")


def _offline():
    """Offline mode for one load (huggingface_hub reads the flag at each request)."""
    import contextlib

    from huggingface_hub import constants

    @contextlib.contextmanager
    def switch():
        before = constants.HF_HUB_OFFLINE
        constants.HF_HUB_OFFLINE = True
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = before
    return switch()
