"""Synthetic gaze sets from the renderer: deterministic per seed, independent of the worker count.

Images are rendered in fixed-size chunks, chunk i drawing from `default_rng([seed, i])`, so the same
(seed, n, size) gives the same bytes whether one or many processes render it. Calibration and
evaluation sets use different seeds (recorded in the metadata) and so never share an image.
Rendered sets are cached as `.npz` under the user cache directory (EDGEKIT_CACHE_DIR overrides).
"""

from __future__ import annotations

import hashlib
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from edgekit.data.gaze import pitchyaw_to_vector
from edgekit.data.npz import GazeSet, make_meta, read_gazeset, write_gazeset
from edgekit.data.render import RENDERER_VERSION, render_eye, sample_appearance, sample_gaze
from edgekit.data.sequences import gaze_trajectory
from edgekit.data.views import render_views
from edgekit.environment import cache_root, parallel_compiles, usable_cores
from edgekit.progress import track

CHUNK = 256
# Seeds of the standard synthetic sets; each role has its own, so the sets are disjoint.
SEEDS = {"train": 0, "val": 1, "calib": 2, "eval": 3}
DEFAULT_FPS = 60.0


def _render_chunk(args) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    seed, chunk, count, height, width, head_pose, views = args
    rng = np.random.default_rng([seed, chunk])
    view_rng = np.random.default_rng([seed, chunk, 1])  # its own stream: the eye images do not depend on the views
    images = np.empty((count, height, width), np.uint8)
    pitchyaw = sample_gaze(rng, count)
    heads = np.zeros((count, 2))
    extras: dict[str, list[np.ndarray]] = {name: [] for name in views}
    for i in range(count):
        app = sample_appearance(rng, width, head_pose=head_pose)
        heads[i] = app.head_pitchyaw
        images[i] = render_eye(app, pitchyaw[i], height, width, rng)
        for name, view in render_views(app, pitchyaw[i], images[i], views, view_rng).items():
            extras[name].append(view)
    return images, pitchyaw, heads, {name: np.stack(v) for name, v in extras.items() if v}


def _render_sequence(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    seed, seq, length, height, width, head_pose, fps = args
    rng = np.random.default_rng([seed, 1_000_000 + seq])
    pitchyaw, _ = gaze_trajectory(rng, length, fps)
    app = sample_appearance(rng, width, head_pose=head_pose)  # frozen for the whole sequence
    images = np.stack([render_eye(app, py, height, width, rng) for py in pitchyaw])
    return images, pitchyaw, np.repeat(app.head_pitchyaw[None], length, axis=0)


def _run(fn, jobs: list, workers: int, progress: bool, label: str) -> list:
    fork_unsafe = "jax" in sys.modules  # fork after JAX started its threads (litert-torch imports it) can deadlock
    if workers > 1 and len(jobs) > 1 and not (fork_unsafe and _unguarded_main_script()):
        import multiprocessing

        # start workers from a clean process instead (forkserver imports the __main__ script in each worker)
        context = multiprocessing.get_context("forkserver" if fork_unsafe else None)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            return list(track(pool.map(fn, jobs), total=len(jobs), description=label, enabled=progress))
    return [fn(job) for job in track(jobs, total=len(jobs), description=label, enabled=progress)]


def _unguarded_main_script() -> bool:
    """Whether __main__ is a script without an `if __name__ == "__main__"` guard: forkserver workers import it, which
    would run the caller's whole script again in every worker (and break the pool). Such callers render serially."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or not str(path).endswith(".py"):
        return False
    try:
        return "__main__" not in Path(path).read_text(errors="ignore")
    except OSError:
        return False


# Fewer images render serially: a pool's start-up (a forkserver once JAX is loaded) cost 0.2 s and 0.5 CPU-s here, about
# what rendering 750 images takes on one core (512 images: 0.49 s in a pool of 2, 0.31 s serially; 2,000: 0.88 s, 1.30 s)
POOL_MIN_IMAGES = 1024


def default_workers(images: int) -> int:
    """Render processes for `images` images: this compile's share of the cores (`edgekit build --jobs N` and the test
    suite's workers run N compiles at once: on a 2-core host each renders serially), at most 8."""
    if images < POOL_MIN_IMAGES:
        return 1
    return max(1, min(8, usable_cores() // parallel_compiles()))


def synthetic_set(n: int, seed: int, size: tuple[int, int] = (40, 64), *, head_pose: bool = False,
                  views: dict[str, list[int]] | None = None, workers: int | None = None, cache: bool = True,
                  progress: bool = True, role: str = "custom") -> GazeSet:
    """`n` independent eye images of `size` (H, W) with uniform gaze; cached by (version, seed, n, size, views).
    views: extra arrays rendered beside each eye (edgekit.data.views: second_eye, face, face_grid), name -> [H, W].
    progress: a bar while rendering, at the process's verbosity (edgekit.progress); False hides it."""
    height, width = size
    spec = {"kind": "images", "renderer": RENDERER_VERSION, "seed": seed, "n": n, "size": [height, width], "head_pose": head_pose}
    if views:  # only when asked, so the cache keys and metadata of sets without views stay as they were
        spec["views"] = {name: list(views[name]) for name in sorted(views)}
    return _cached(spec, role, cache, lambda: _build_images(spec, workers, progress, role))


def _build_images(spec: dict, workers: int | None, progress: bool, role: str) -> GazeSet:
    n, seed, (height, width), head_pose = spec["n"], spec["seed"], spec["size"], spec["head_pose"]
    views = spec.get("views", {})
    jobs = [(seed, c, min(CHUNK, n - c * CHUNK), height, width, head_pose, views) for c in range((n + CHUNK - 1) // CHUNK)]
    parts = _run(_render_chunk, jobs, workers or default_workers(n), progress, f"rendering {n} eye images")
    images, pitchyaw, heads = (np.concatenate(p) for p in list(zip(*parts))[:3])
    extras = {name: np.concatenate([part[3][name] for part in parts]) for name in views}
    return GazeSet(
        images=images, gaze=pitchyaw_to_vector(pitchyaw).astype(np.float32), pitchyaw=pitchyaw.astype(np.float32),
        head_pose=heads.astype(np.float32) if head_pose else None, extras=extras,
        meta=make_meta(f"synthetic:v{RENDERER_VERSION}:seed={seed}", preprocessing="none", seed=seed, role=role, renderer=spec))


def synthetic_sequences(n_sequences: int, length: int, seed: int, size: tuple[int, int] = (40, 64), *,
                        fps: float = DEFAULT_FPS, head_pose: bool = False, workers: int | None = None,
                        cache: bool = True, progress: bool = True, role: str = "custom") -> GazeSet:
    """`n_sequences` sequences of `length` frames at `fps`; appearance frozen per sequence."""
    height, width = size
    spec = {"kind": "sequences", "renderer": RENDERER_VERSION, "seed": seed, "n_sequences": n_sequences,
            "length": length, "size": [height, width], "fps": fps, "head_pose": head_pose}
    return _cached(spec, role, cache, lambda: _build_sequences(spec, workers, progress, role))


def _build_sequences(spec: dict, workers: int | None, progress: bool, role: str) -> GazeSet:
    n_seq, length, seed, fps = spec["n_sequences"], spec["length"], spec["seed"], spec["fps"]
    height, width = spec["size"]
    jobs = [(seed, s, length, height, width, spec["head_pose"], fps) for s in range(n_seq)]
    parts = _run(_render_sequence, jobs, workers or default_workers(n_seq * length), progress,
                 f"rendering {n_seq} sequences")
    images, pitchyaw, heads = (np.concatenate(p) for p in zip(*parts))
    frame = np.tile(np.arange(length, dtype=np.int32), n_seq)
    return GazeSet(
        images=images, gaze=pitchyaw_to_vector(pitchyaw).astype(np.float32), pitchyaw=pitchyaw.astype(np.float32),
        head_pose=heads.astype(np.float32) if spec["head_pose"] else None,
        seq_id=np.repeat(np.arange(n_seq, dtype=np.int32), length), frame_idx=frame, timestamp_s=frame / fps,
        meta=make_meta(f"synthetic-seq:v{RENDERER_VERSION}:seed={seed}", fps=fps, seed=seed, role=role, renderer=spec))


def _cached(spec: dict, role: str, cache: bool, build) -> GazeSet:
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_root() / "synthetic" / f"{spec['kind']}-{key}.npz"
    if cache and path.is_file():
        try:
            gs = read_gazeset(path)
            return GazeSet(**{**gs.__dict__, "meta": {**gs.meta, "role": role}})
        except Exception:  # a damaged cache entry is re-rendered, never trusted
            path.unlink(missing_ok=True)
    gs = build()
    if cache:
        write_gazeset(gs, path)
    return gs


def standard_set(role: str, n: int, size: tuple[int, int] = (40, 64), **kwargs) -> GazeSet:
    """The synthetic set for a role (train, val, calib, eval): each role has its own seed."""
    return synthetic_set(n, SEEDS[role], size, role=role, **kwargs)
