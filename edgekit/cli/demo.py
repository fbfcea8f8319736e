"""`edgekit demo ...`: the built-in demo models, their training, evaluation and sample images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgekit.cli.options import FormatOpt, OutputFormat, QuietOpt, VerboseOpt, set_verbosity
from edgekit.errors import BadInputError

demo_app = typer.Typer(no_args_is_help=True, help="Built-in demo models: train, evaluate, show synthetic samples.")


@demo_app.command()
def train(
    arch: Annotated[str, typer.Option(help="Built-in architecture: tinygaze, gazeresnet18 or temporalgaze.")] = "tinygaze",
    out: Annotated[Path, typer.Option("--out", "-o", readable=False, help="Folder for <arch>.safetensors and <arch>.json (the model card).")] = Path("build/models"),
    n_train: Annotated[int | None, typer.Option(help="Training images (sequences for temporalgaze); default per model.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs; default per model.")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size; default per model.")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (one-cycle); default per model.")] = None,
    device: Annotated[str, typer.Option(help="torch device for training (validation always runs on the CPU).")] = "cpu",
    weights_dtype: Annotated[str, typer.Option(help="Stored weight dtype: float32 or float16.")] = "float32",
    seed: Annotated[int, typer.Option(help="torch seed for initialisation and shuffling.")] = 0,
    output_format: FormatOpt = OutputFormat.human,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Train a built-in model on synthetic eyes; writes safetensors weights and a model card with its measured error."""
    set_verbosity(quiet, verbose)
    # why: lazy, imports torch; `edgekit --help` must stay fast
    from edgekit.models.registry import builtin

    if weights_dtype not in ("float32", "float16"):
        raise BadInputError(f"--weights-dtype {weights_dtype!r} is not supported; fix: use float32 or float16")
    spec = builtin(arch)
    if spec.temporal:
        # why: lazy, imports torch; `edgekit --help` must stay fast
        from edgekit.models.train import train_temporal

        card = train_temporal(arch, out, n_sequences=n_train, epochs=epochs, batch=batch, lr=lr, seed=seed, device=device)
        fc = card.validation["forecast"]
        line = (f"{arch}: forecast error t+1..t+5 {_fmt(fc['model_deg'])} deg; hold-last {_fmt(fc['hold_last_deg'])}; "
                f"constant-velocity {_fmt(fc['constant_velocity_deg'])}")
        validation = {"forecast": {k: fc[k] for k in ("model_deg", "hold_last_deg", "constant_velocity_deg")}}
    else:
        # why: lazy, imports torch; `edgekit --help` must stay fast
        from edgekit.models.train import train_image_model

        card = train_image_model(arch, out, n_train=n_train, epochs=epochs, batch=batch, lr=lr, seed=seed, device=device,
                                 weights_dtype=weights_dtype)
        acc = card.validation["accuracy"]
        line = (f"{arch}: validation mean {acc['model']['mean_deg']:.2f} deg on {acc['model']['n']} held-out images "
                f"(predict-the-mean baseline {acc['predict_mean_baseline']['mean_deg']:.2f} deg)")
        validation = {"mean_deg": acc["model"]["mean_deg"], "n": acc["model"]["n"],
                      "predict_mean_baseline_deg": acc["predict_mean_baseline"]["mean_deg"]}
    weights_path, card_path = Path(out) / card.weights["file"], Path(out) / (card.name + ".json")
    if output_format == OutputFormat.json:
        typer.echo(json.dumps({"arch": arch, "weights_path": str(weights_path), "card_path": str(card_path),
                               "validation": validation}, indent=2))
        return
    typer.echo(line)
    typer.echo(f"wrote {weights_path} and {card_path}")


def _fmt(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


@demo_app.command()
def evaluate(
    model: Annotated[str, typer.Argument(help="Built-in model name (shipped weights).")] = "tinygaze",
    n: Annotated[int, typer.Option(help="Evaluation images (sequences for temporal models).")] = 2000,
    eval_set: Annotated[Path | None, typer.Option(readable=False, help="An evaluation .npz instead of the synthetic one.")] = None,
    output_format: FormatOpt = OutputFormat.human,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Evaluate a shipped demo model and print its accuracy report (angular error in degrees)."""
    set_verbosity(quiet, verbose)
    # why: lazy, imports torch and cv2; `edgekit --help` must stay fast
    from edgekit.report.accuracy import evaluate_shipped, render_human

    report = evaluate_shipped(model, n=n, eval_set=eval_set)
    typer.echo(json.dumps(report, indent=2) if output_format == OutputFormat.json else render_human(report))


@demo_app.command()
def samples(
    out: Annotated[Path, typer.Option("--out", "-o", readable=False, help="Folder for samples.png, the contact sheet.")] = Path("build"),
    n: Annotated[int, typer.Option(help="Number of samples.")] = 24,
    seed: Annotated[int, typer.Option(help="Renderer seed.")] = 0,
    size: Annotated[str, typer.Option(help="Image size HxW.")] = "40x64",
    head_pose: Annotated[bool, typer.Option(help="Render head pose as well.")] = False,
    scale: Annotated[int, typer.Option(help="Upscale factor for viewing.")] = 4,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write a contact sheet of synthetic eye images with their gaze arrows."""
    set_verbosity(quiet, verbose)
    # why: lazy, imports cv2; `edgekit --help` must stay fast
    from edgekit.data.contact_sheet import contact_sheet
    from edgekit.data.synthetic import synthetic_set

    gs = synthetic_set(n, seed, _parse_size(size), head_pose=head_pose, cache=False, workers=1)
    path = contact_sheet(gs, out / "samples.png", scale=scale)
    typer.echo(f"wrote {path} ({n} samples, seed {seed})")


@demo_app.command()
def dataset(
    out: Annotated[Path, typer.Argument(readable=False, help="Output .npz.")],
    role: Annotated[str, typer.Option(help="train, val, calib or eval: each role has its own seed.")] = "eval",
    n: Annotated[int, typer.Option(help="Images, or sequences with --sequence-length.")] = 512,
    size: Annotated[str, typer.Option(help="Image size HxW.")] = "40x64",
    sequence_length: Annotated[int | None, typer.Option(help="Write sequences of this many frames (60 Hz).")] = None,
    head_pose: Annotated[bool, typer.Option(help="Render and store head pose.")] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write a synthetic gaze set in edgekit's .npz format."""
    set_verbosity(quiet, verbose)
    # why: lazy, imports cv2; `edgekit --help` must stay fast
    from edgekit.data import synthetic
    from edgekit.data.npz import write_gazeset

    if role not in synthetic.SEEDS:
        raise BadInputError(f"--role {role!r} is unknown; fix: use one of {', '.join(synthetic.SEEDS)}")
    if sequence_length:
        gs = synthetic.synthetic_sequences(n, sequence_length, synthetic.SEEDS[role], _parse_size(size), head_pose=head_pose,
                                           role=role, cache=False, progress=True)
    else:
        gs = synthetic.synthetic_set(n, synthetic.SEEDS[role], _parse_size(size), head_pose=head_pose, role=role,
                                     cache=False, progress=True)
    write_gazeset(gs, out)
    typer.echo(f"wrote {out}: {len(gs)} images {gs.image_shape}, {gs.meta['source']}")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        if h < 16 or w < 16:
            raise ValueError
        return h, w
    except ValueError:
        raise BadInputError(f"size {text!r} is not HxW with both at least 16; fix: e.g. --size 40x64") from None
