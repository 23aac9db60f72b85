"""``kcl-hub``: ``save``, ``publish``, ``convert``, ``zoo-table``.

Every user error ends in one ``kcl-hub <command>: error: ...`` line and exit status 2 (a Hub or
network failure: 1); ``--debug`` shows the traceback instead. Flags take dashes or underscores
(``--num-classes`` / ``--num_classes``), never abbreviations. ``hub/convert.py`` and
``hub/publish.py`` are thin wrappers around :func:`main`.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..eval.report import file_sha256, load_results
from ..models import list_kcl_models
from ..models.convert import (
    LAYOUTS,
    CheckpointMismatchError,
    check_state_dict,
    convert_state_dict,
    load_checkpoint_file,
)
from ..utils.cli import FlagParser
from ._meta import WEIGHTS_FILE, summarize_keys
from .conversion import convert_checkpoint
from .manifest import zoo_table_markdown
from .save import save_for_hub
from .upload import files_to_upload, publish

__all__ = ["build_parser", "main"]

_HUB_MODULES = ("huggingface_hub", "requests", "httpx", "urllib3")


def _read_class_names(path: str | None) -> list[str] | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"class-names file not found: {p}")
    names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{p}: no class names (one per line)")
    return names


def build_parser() -> FlagParser:
    parser = FlagParser(prog="kcl-hub", description="Hub folders, uploads and checkpoint conversion for kcl-models. "
                        "Flags take dashes or underscores (--num-classes, --num_classes); no abbreviations.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{convert,save,publish,zoo-table}")

    conv = sub.add_parser("convert", help="convert the authors' checkpoint into a Hub-ready timm folder",
                          description="Convert a KCL, BCL, PaCo, GPaCo or ProCo checkpoint (strict: every missing, "
                                      "unexpected or mis-shaped key is reported and nothing is written).")
    conv.add_argument("layout", choices=("auto",) + LAYOUTS,
                      help="checkpoint layout: kcl-stage1 (MoCo encoder_q, gives a backbone with num_classes=0), "
                           "kcl-stage2 (linear classifier), bcl (encoder + cosine fc), paco / gpaco (encoder_q + "
                           "linear), proco (encoder + fc), or auto-detect")
    conv.add_argument("--arch", required=True, help="registered architecture, optionally arch.tag, e.g. "
                      "resnext50_32x4d_bcl or resnet50_kcl.inat2018")
    conv.add_argument("--checkpoint", required=True, help="the .pth/.pth.tar (or .safetensors) to convert")
    conv.add_argument("--out", "--out-dir", dest="out", required=True, help="output folder")
    conv.add_argument("--num-classes", type=int, default=None, help="expected classes (checked)")
    conv.add_argument("--class-names", default=None, help="text file, one class name per line")
    conv.add_argument("--source-url", default=None, help="where the checkpoint came from (for the card)")
    conv.add_argument("--license", default=None, help="weights license (default: the authors' for a release "
                      "recorded in hub/manifest.yaml, else 'other')")
    conv.add_argument("--manifest", default=None, help="manifest with the authors' sha256 (default hub/manifest.yaml)")
    conv.add_argument("--results", default=None, help="results JSON, if already evaluated")
    conv.add_argument("--repo", default=None, help="Hub repo named in the card (default kcl-models/<arch.tag>)")
    conv.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    conv.add_argument("--force", action="store_true", help="accept results measured on other weights (stated on "
                      "the card)")

    save = sub.add_parser("save", help="write a Hub-ready folder for trained weights",
                          description="Write model.safetensors, config.json and the model card for trained weights.")
    save.add_argument("--model", required=True, help="timm model name (arch.tag) or local-dir:/hf-hub: spec")
    save.add_argument("--weights", default=None, help="timm-format weights (.safetensors, or a .pth read with "
                      "weights_only=True); omit when --model is local-dir:/hf-hub:")
    save.add_argument("--results", required=True, help="results JSON written by eval.py")
    save.add_argument("--out", "--out-dir", dest="out", required=True, help="output folder")
    save.add_argument("--config", default=None, help="training config (YAML/JSON); default results['config']")
    save.add_argument("--variant", default=None, help="arch.tag name (default from the model's pretrained cfg)")
    save.add_argument("--repo", default=None, help="Hub repo named in the card (default kcl-models/<variant>)")
    save.add_argument("--overwrite", action="store_true", help="replace an earlier export in --out")
    save.add_argument("--force", action="store_true", help="accept results measured on another architecture or "
                      "other weights (stated on the card)")

    pub = sub.add_parser("publish", help="create the Hub repo and upload a folder",
                         description="Upload a folder written by `save`/`convert` (its timm/ export to the branch "
                                     "'timm'). The token comes from HF_TOKEN or `hf auth login` and is never printed.")
    pub.add_argument("--folder", required=True)
    pub.add_argument("--repo", required=True, help="org/name, e.g. kcl-models/resnext50_32x4d_bcl.imagenet_lt")
    pub.add_argument("--results", default=None, help="results JSON: rewrite the card with these numbers first")
    pub.add_argument("--private", action="store_true")
    pub.add_argument("--dry-run", action="store_true", help="print the files and card metadata; upload nothing")
    pub.add_argument("--commit-message", default=None)
    pub.add_argument("--force", action="store_true", help="publish results measured on another architecture or "
                     "other weights (stated on the card)")

    zoo = sub.add_parser("zoo-table", help="print README's zoo table from hub/manifest.yaml")
    zoo.add_argument("--manifest", default=None)
    for p in (conv, save, pub, zoo):  # SUPPRESS: a sub-command's default must not undo `kcl-hub --debug <cmd>`
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of an error")
    return parser


def _model_for_save(spec: str, weights: str | None, results: Mapping) -> Any:
    import timm

    num_classes = int(results["model"]["num_classes"])
    if spec.startswith(("local-dir:", "hf-hub:")):
        if weights:
            raise ValueError("--weights is not used with a local-dir:/hf-hub: model (the folder holds the weights)")
        if spec.startswith("local-dir:") and not Path(spec[len("local-dir:"):]).is_dir():
            raise FileNotFoundError(f"model folder not found: {spec[len('local-dir:'):]}")
        from safetensors import SafetensorError
        try:
            return timm.create_model(spec, pretrained=True).eval()
        except (SafetensorError, json.JSONDecodeError) as err:  # timm's messages do not name the file
            raise ValueError(f"{spec}: cannot load the model ({type(err).__name__}: {str(err).splitlines()[0]}); "
                             f"is its model.safetensors truncated or its config.json malformed?") from None
    if not weights:
        raise ValueError(f"--weights is required with --model {spec} (or pass --model local-dir:<folder>)")
    if not timm.is_model(spec.split(".", 1)[0]):
        raise ValueError(f"unknown model '{spec}': not a registered timm name (kcl-models registers "
                         f"{', '.join(list_kcl_models())}); a folder needs local-dir:")
    if "." in spec and spec not in timm.list_models(spec.split(".", 1)[0], pretrained=True):
        raise ValueError(f"unknown variant '{spec}'; registered: "
                         f"{', '.join(timm.list_models(spec.split('.', 1)[0], pretrained=True)) or 'none'}")
    model = timm.create_model(spec, pretrained=False, num_classes=num_classes)
    converted = convert_state_dict(load_checkpoint_file(weights), layout="kcl-stage2")
    model.load_state_dict(check_state_dict(converted, model, what=f"weights '{weights}'"), strict=True)
    return model.eval()


def _run(args: Any) -> None:
    import kcl_models  # noqa: F401  (registers the architectures before timm resolves names)

    if args.command == "convert":
        out, conv = convert_checkpoint(
            args.checkpoint, args.arch, args.out, layout=args.layout, num_classes=args.num_classes,
            class_names=_read_class_names(args.class_names), source_url=args.source_url,
            results_json=args.results, repo_id=args.repo, overwrite=args.overwrite, license=args.license,
            manifest=args.manifest, force=args.force)
        print(f"converted {args.checkpoint} ({conv.layout} layout): kept {len(conv.state_dict)} tensors, "
              f"num_classes={conv.num_classes}" + (f", transposed {', '.join(conv.transposed)}"
                                                   if conv.transposed else ""))
        if conv.dropped:
            print(f"dropped {len(conv.dropped)} training-only tensors: {summarize_keys(conv.dropped)}")
        source = json.loads((out / "config.json").read_text())["kcl_models"]["source"]
        print(f"provenance: {source['file']} sha256 {source['sha256']} "
              + (f"is the authors' release recorded for {source['authors_release']['variant']}"
                 if source.get("authors_release") else "is no authors' release recorded in hub/manifest.yaml: the "
                 "card claims nothing about who trained it"))
        print(f"wrote {out}: {', '.join(files_to_upload(out))}")
        if conv.num_classes == 0:
            print("note: a backbone without classifier (num_classes=0); publish it under a repo of its own "
                  "(e.g. <arch>.<tag>_stage1), not the registry's classifier repo")
        print(f"check it: timm.create_model('local-dir:{out}', pretrained=True) after `import kcl_models`")
    elif args.command == "save":
        results = load_results(args.results)
        model = _model_for_save(args.model, args.weights, results)
        source: Any = args.weights
        train_config = args.config
        if args.model.startswith("local-dir:"):
            local = Path(args.model[len("local-dir:"):])
            weights = local / WEIGHTS_FILE  # hash what is exported (the trainer's model/ folder)
            if weights.is_file():
                source = {"kind": "trained", "file": weights.name, "sha256": file_sha256(weights)}
            if train_config is None and not results.get("config") and (local.parent / "config.yaml").is_file():
                train_config = local.parent / "config.yaml"  # the trainer saves it next to model/
                print(f"training config: {train_config}")
        out = save_for_hub(model, results, args.out, train_config=train_config, variant=args.variant,
                           repo_id=args.repo, source_checkpoint=source, overwrite=args.overwrite, force=args.force)
        print(f"wrote {out}: {', '.join(files_to_upload(out))}")
    elif args.command == "publish":
        publish(args.folder, args.repo, private=args.private, dry_run=args.dry_run, results=args.results,
                commit_message=args.commit_message, force=args.force)
    elif args.command == "zoo-table":
        print(zoo_table_markdown(args.manifest), end="")


def _one_line(err: BaseException) -> tuple[str, int]:
    """The message for one error and the exit status (1: the Hub or network, 2: everything else)."""
    text = str(err).strip()
    if isinstance(err, CheckpointMismatchError):
        return f"error: {text}", 2  # the key listing is the message: every bad key is named
    first = text.splitlines()[0] if text else type(err).__name__
    if type(err).__module__.startswith(_HUB_MODULES):
        return f"Hub error: {type(err).__name__}: {first}", 1
    if isinstance(err, KeyError):
        first = f"missing key {first}"
    known = (OSError, ValueError, RuntimeError, KeyError, ImportError)
    if not isinstance(err, known):
        return (f"internal error: {type(err).__name__}: {first} (rerun with --debug for the traceback and report "
                f"it)"), 2
    return f"error: {first}" + (" (--debug shows more)" if "\n" in text else ""), 2


def main(argv: Sequence[str] | None = None) -> int:
    """``kcl-hub`` console script. Returns the exit status (0 ok, 2 a reported error, 1 a Hub error)."""
    args = build_parser().parse_args(argv)
    try:
        _run(args)
    except KeyboardInterrupt:
        print(f"kcl-hub {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - one line per error; --debug for the traceback
        if args.debug:
            raise
        message, status = _one_line(err)
        print(f"kcl-hub {args.command}: {message}", file=sys.stderr)
        return status
    return 0
