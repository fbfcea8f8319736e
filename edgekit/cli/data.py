"""`edgekit data ...`: convert datasets into edgekit's .npz format and check such files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.demo import _parse_size
from edgekit.cli.options import FormatOpt, OutputFormat, QuietOpt, VerboseOpt, set_verbosity

# the format as `edgekit data --help` shows it; tests/data/test_plain_npz.py checks it names every key the reader takes
# (edgekit.data.npz), so the two cannot drift apart. Plain text: rich would read square brackets as markup.
FORMAT_HELP = """\
The .npz format: one numpy archive, readable with numpy alone (no pickles).

  images       uint8    (N,H,W) gray, or (N,H,W,C) with C 1 or 3 (BGR)
  gaze         float32  (N,3) unit gaze vectors
  pitchyaw     float32  (N,2) pitch, yaw in radians (instead of gaze)
  head_pose    float32  (N,2) head pitch, yaw in radians
  seq_id       int32    (N,) sequence of each frame (temporal models)
  frame_idx    int32    (N,) frame number within its sequence
  timestamp_s  float64  (N,) seconds
  meta         str      JSON: source, layout, color, fps, preprocessing
  extra_NAME   numeric  (N,...) another model input (a face crop, a face
                        grid), fed to the card's input with source NAME

Required: images, and gaze or pitchyaw. The rest is optional: without
meta (or one of its keys) defaults apply, source = the file name. float64
and int64 labels are cast on read; images are not.

Gaze convention (MPIIGaze, ETH-XGaze): camera frame x right, y down,
z forward; g = (-cos p sin y, -sin p, -cos p cos y): pitch = yaw = 0
looks into the camera, g = (0, 0, -1).

Images must be at the model's input size: compile refuses another size
unless --resize (the report then says so), or write a resized copy with
`edgekit data convert npz IN.npz OUT.npz --size 40x64`. Under 100 samples
a mean error is not meaningful: a warning says so.

Example:

  np.savez("eval.npz", images=eyes.astype(np.uint8), gaze=gaze)
  edgekit data check eval.npz
  edgekit compile gazeresnet18 --target onnx --eval-set eval.npz
"""

DATASETS = "openeds2020, ethxgaze, mpiigaze-mat, mpiigaze-h5, or npz (an .npz in this format, to resize or trim)"

data_app = typer.Typer(no_args_is_help=True,
                       help="Gaze datasets: convert real datasets to .npz, check .npz files.\n\n" + FORMAT_HELP)


@data_app.command(help="Convert a gaze dataset in its published layout (or an .npz) into one validated .npz.\n\n"
                       f"DATASET is one of {DATASETS}. See `edgekit data --help` for the format.")
def convert(
    dataset: Annotated[str, typer.Argument(help=DATASETS + ".")],
    source: Annotated[Path, typer.Argument(readable=False, help="Dataset root folder or file.")],
    out: Annotated[Path, typer.Argument(readable=False, help="Output .npz file.")],
    limit: Annotated[int | None, typer.Option(help="Keep at most this many samples.")] = None,
    size: Annotated[str | None, typer.Option(help="Resize the eye images to HxW (cv2.INTER_AREA).")] = None,
    output_format: FormatOpt = OutputFormat.human,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    set_verbosity(quiet, verbose)
    # why: lazy, imports cv2; `edgekit --help` must stay fast
    from edgekit import progress
    from edgekit.data.loaders import load_dataset
    from edgekit.data.npz import write_gazeset

    kwargs = {"limit": limit}
    if size:
        kwargs["size"] = _parse_size(size)
    with progress.step(f"reading {dataset} from {source}"):
        gs = load_dataset(dataset, source, **kwargs)
    write_gazeset(gs, out)
    warnings = _warnings(gs)
    if output_format == OutputFormat.json:
        typer.echo(json.dumps({"out": str(out), **_summary(gs), "warnings": warnings}, indent=2))
    else:
        typer.echo(f"wrote {out}: {len(gs)} images {gs.image_shape} from {gs.meta['source']}")
    _print_warnings(warnings)


@data_app.command(help="Validate a gaze-set .npz and print what it holds.\n\n" + FORMAT_HELP)
def check(
    path: Annotated[Path, typer.Argument(readable=False, help="A gaze-set .npz.")],
    output_format: FormatOpt = OutputFormat.human,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    set_verbosity(quiet, verbose)
    # why: lazy, imports cv2; `edgekit --help` must stay fast
    from edgekit import progress
    from edgekit.data.npz import read_gazeset

    gs = read_gazeset(path)
    filled = _filled_in(path)
    warnings = _warnings(gs)
    summary = _summary(gs)
    if output_format == OutputFormat.json:
        typer.echo(json.dumps({"path": str(path), "ok": True, **summary, "filled_in": filled, "warnings": warnings},
                              indent=2))
    else:
        extras = ", ".join(f"{k} {v['dtype']}{v['shape']}" for k, v in summary["extras"].items())
        typer.echo(f"{path}: ok, {len(gs)} images {gs.image_shape}, optional {summary['optional']}, "
                   + (f"extra inputs [{extras}], " if extras else "") + f"source {gs.meta['source']}, "
                   + f"digest {gs.digest()[:16]}")
        if filled:
            typer.echo("filled in: " + ", ".join(f"{k} ({why})" for k, why in filled.items()))
    progress.detail(f"meta: {json.dumps(gs.meta, sort_keys=True)}")
    for key, arr in gs._arrays().items():
        if arr is not None:
            progress.detail(f"{key}: {arr.dtype} {list(arr.shape)}")
    _print_warnings(warnings)


def _summary(gs) -> dict:
    optional = [k for k in ("pitchyaw", "head_pose", "seq_id", "frame_idx", "timestamp_s") if getattr(gs, k) is not None]
    return {"n": len(gs), "image_shape": list(gs.image_shape), "optional": optional,
            "extras": {k: {"dtype": str(v.dtype), "shape": list(v.shape[1:])} for k, v in sorted(gs.extras.items())},
            "source": gs.meta["source"], "digest": gs.digest()}


def _filled_in(path: Path) -> dict[str, str]:
    """Keys the file does not store and the reader derived: key -> from what."""
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:  # the zip's directory only: read_gazeset already read the arrays
        stored = set(npz.files)
    derived = {"gaze": "from pitchyaw", "pitchyaw": "from gaze", "meta": "defaults, source = the file name"}
    return {k: why for k, why in derived.items() if k not in stored}


def _warnings(gs) -> list[str]:
    from edgekit.data.fit import small_set_warning

    warning = small_set_warning(gs, "gaze set")
    return [warning] if warning else []


def _print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
