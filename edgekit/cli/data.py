"""`edgekit data ...`: convert datasets into edgekit's .npz format and check such files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.demo import _parse_size

data_app = typer.Typer(no_args_is_help=True, help="Gaze datasets: convert real datasets to .npz, check .npz files.")


@data_app.command()
def convert(
    dataset: Annotated[str, typer.Argument(help="openeds2020, ethxgaze, mpiigaze-mat or mpiigaze-h5.")],
    source: Annotated[Path, typer.Argument(readable=False, help="Dataset root folder or file.")],
    out: Annotated[Path, typer.Argument(readable=False, help="Output .npz.")],
    limit: Annotated[int | None, typer.Option(help="Keep at most this many samples.")] = None,
    size: Annotated[str | None, typer.Option(help="Resize to HxW (openeds2020, ethxgaze).")] = None,
) -> None:
    """Convert a gaze dataset in its published layout into one validated .npz."""
    # why: lazy, imports cv2; `edgekit --help` must stay fast
    from edgekit.data.loaders import load_dataset
    from edgekit.data.npz import write_gazeset

    kwargs = {"limit": limit}
    if size:
        kwargs["size"] = _parse_size(size)
    gs = load_dataset(dataset, source, **kwargs)
    write_gazeset(gs, out)
    typer.echo(f"wrote {out}: {len(gs)} images {gs.image_shape} from {gs.meta['source']}")


@data_app.command()
def check(path: Annotated[Path, typer.Argument(readable=False, help="A gaze-set .npz.")]) -> None:
    """Validate a gaze-set .npz and print what it holds."""
    # why: lazy, imports cv2; `edgekit --help` must stay fast
    from edgekit.data.npz import read_gazeset

    gs = read_gazeset(path)
    optional = [k for k in ("pitchyaw", "head_pose", "seq_id", "frame_idx", "timestamp_s") if getattr(gs, k) is not None]
    extras = ", ".join(f"{k} {v.dtype}{list(v.shape[1:])}" for k, v in sorted(gs.extras.items()))
    typer.echo(f"{path}: ok, {len(gs)} images {gs.image_shape}, optional {optional}, "
               + (f"extra inputs [{extras}], " if extras else "") + f"source {gs.meta['source']}, digest {gs.digest()[:16]}")
