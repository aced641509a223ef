"""``predict``: score a user's own images with a finished run: one row per image in predictions.csv
(the image score, where it falls among the run's held-out normal images, the decision when a
threshold is given), a heat-map picture per image in maps/, and predictions.json with what produced
them."""
from __future__ import annotations

import csv
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ..book.viz import heat_overlay, to_numpy_image
from ..data import image_files
from ..engine.pipeline import normal_maps, normal_percentile, score, score_files
from ..flags import UsageError
from ..runs.folder import (
    RunLock,
    check_outside_dataset,
    check_run,
    git_commit,
    load_split,
    machine,
    new_folders,
    read_json,
    remove_new_folders,
    write_json,
    write_text,
)
from ..storage import StorageError
from .common import device_of, open_checked_run
from .evaluate import describe_scoring, scoring_of

PREDICTIONS = "predictions.csv"
PREDICTIONS_JSON = "predictions.json"


def previous_maps(out: Path) -> set[str]:
    """The heat-map pictures a previous ``predict`` into ``out`` wrote (from its predictions.json, or
    the map column of its predictions.csv): the only files in maps/ a --force rerun may remove."""
    names = []
    try:
        listed = read_json(out / PREDICTIONS_JSON).get("maps")
        if isinstance(listed, list):
            names = listed
    except StorageError:
        pass
    if not names and (out / PREDICTIONS).is_file():
        try:
            names = [row.get("map", "") for row in csv.DictReader(io.StringIO((out / PREDICTIONS).read_text()))]
        except (OSError, UnicodeDecodeError, csv.Error):
            names = []
        names = [n[len("maps/"):] for n in names if isinstance(n, str) and n.startswith("maps/")]
    # a name only, inside maps/: never a path that leads elsewhere
    return {n for n in names if isinstance(n, str) and n and Path(n).name == n and n not in (".", "..")}


def check_out(args, out: Path) -> set[str]:
    """--out is a folder without predictions (unless --force); the map names a previous predict wrote."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    previous = previous_maps(out)
    if ((out / PREDICTIONS).exists() or (out / PREDICTIONS_JSON).exists()) and not args.force:
        raise UsageError(f"{out} already holds predictions: --force to overwrite them")
    return previous


def check_names(args, out: Path, names: list[str], previous: set[str]) -> None:
    """--out may take pictures of these names (UsageError when one there is not ours, without --force)."""
    theirs = [n for n in names if (out / "maps" / n).exists() and n not in previous]
    if theirs and not args.force:
        raise UsageError(f"{out / 'maps' / theirs[0]} exists and was not written by predict: "
                         f"--force to overwrite it, or another --out")


def category_of(args, trained, prior: str, cfg):
    """The category the images show: --category, or the run's only one (None: several, none named)."""
    categories = trained.category_names
    category = args.category or (categories[0] if len(categories) == 1 else None)
    if category is not None:
        trained.check_category(category)
    if category is None and (prior == "per-class" or cfg.standardize):
        raise UsageError(f"the run was trained on {', '.join(categories)}: --category names the one these images show "
                         f"(needed with --prior per-class and --standardize)")
    return category


def normal_scores_of(trained, run, category, prior, cfg, reference, device):
    """The image scores of the run's held-out normal images of ``category`` (all when None)."""

    test_set = load_split(run, "test")
    keep = test_set.labels.numpy() == 0
    if category is not None:
        keep &= test_set.categories.numpy() == test_set.category_names.index(category)
    if not keep.any():
        raise UsageError(f"the run's test split has no normal image{' of ' + category if category else ''} to "
                         f"calibrate the scores against: use --no-calibrate")
    return score(trained, test_set.subset(np.flatnonzero(keep).tolist()), prior, cfg, device=device,
                 reference=reference)["image"]


def write_maps(args, scoring, files, names, partial: Path, normal_scores) -> tuple[list, list, list]:
    """Score ``files`` chunk by chunk into heat-map pictures in ``partial``; (csv rows, scores, percentiles)."""
    trained, category, prior, cfg, reference, device = scoring
    vmax = None if normal_scores is None else float(normal_scores.max())   # red: as high as any normal image's peak
    rows, scores, percentiles = [["image", "score", "normal_percentile", "anomalous", "map"]], [], []
    for images, result in score_files(trained, files, category or trained.category_names[0], prior, cfg, reference,
                                      device):
        if normal_scores is not None:
            percentiles += normal_percentile(result["image"], normal_scores).tolist()
        for i in range(len(images.paths)):
            n = len(scores)
            save_heat_picture(images.images[i], result["s"][i], vmax, partial / names[n])
            scores.append(float(result["image"][i]))
            rows.append([csv_text(str(files[n])), f"{scores[-1]:.6g}", f"{percentiles[n]:.1f}" if percentiles else "",
                         "" if args.threshold is None else str(int(scores[-1] > args.threshold)),
                         csv_text(f"maps/{names[n]}")])
    return rows, scores, percentiles


def publish(out: Path, partial: Path, previous: set, names: list, rows: list, record: dict) -> None:
    """Move the finished pictures into maps/ (removing a --force rerun's stale ones it listed), then
    write predictions.csv and predictions.json."""
    (out / "maps").mkdir(exist_ok=True)
    for old in previous - set(names):
        (out / "maps" / old).unlink(missing_ok=True)
    for picture in partial.iterdir():
        picture.replace(out / "maps" / picture.name)
    partial.rmdir()
    table = io.StringIO()
    csv.writer(table, lineterminator="\n").writerows(rows)     # quotes commas, quotes and line breaks
    write_text(table.getvalue(), out / PREDICTIONS)
    write_json(record, out / PREDICTIONS_JSON)


def write_locked(args, out: Path, work):
    """``work(partial)`` holding the lock of ``out``, with a fresh ``.maps.*.partial/`` folder in it for
    the pictures: an unreadable image half-way leaves no half output behind, and a folder this call
    made is removed whole. Returns what ``work`` returns."""
    created = []                                       # only the folders this call itself made
    for folder in reversed(new_folders(out)):
        try:
            folder.mkdir()
            created.insert(0, folder)
        except FileExistsError:                        # another predict made it first: not ours
            pass
    lock = RunLock(out, args.command_line)
    try:
        lock.acquire()
    except BaseException:
        remove_new_folders(created)
        raise
    partial = None
    try:
        for stale in out.glob(".maps.*.partial"):      # left by a predict killed half-way (we hold the lock)
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
        if not args.force and ((out / PREDICTIONS).exists() or (out / PREDICTIONS_JSON).exists()):
            # checked again under the lock: another predict may have finished since check_out
            raise UsageError(f"{out} already holds predictions (written while this one started): "
                             f"--force to overwrite them")
        partial = Path(tempfile.mkdtemp(dir=out, prefix=".maps.", suffix=".partial"))
        return work(partial)
    except BaseException:
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        lock.release()
        if created:
            shutil.rmtree(out, ignore_errors=True)       # a folder this call made: all of it is ours
            remove_new_folders(created[1:])
        raise
    finally:
        lock.release()


def command(args) -> int:

    run_dir, out = Path(args.run), Path(args.out)
    check_run(run_dir)
    previous = check_out(args, out)
    files = image_files(args.images)
    names = [f"{n:04d}_{Path(path).stem}.png" for n, path in enumerate(files)]
    check_names(args, out, names, previous)
    t0, commit = time.time(), git_commit()
    device = device_of(args)
    trained, run = open_checked_run(run_dir, device)
    check_outside_dataset(out, run["data"].get("root"))
    prior, cfg = scoring_of(args, trained, run, run_dir)
    category = category_of(args, trained, prior, cfg)
    reference = normal_maps(trained, load_split(run, "train"), prior, cfg, device) if cfg.standardize else None
    normal_scores = (None if args.no_calibrate      # without calibration each picture is scaled to its own peak
                     else normal_scores_of(trained, run, category, prior, cfg, reference, device))

    def work(partial: Path):
        rows, scores, percentiles = write_maps(args, (trained, category, prior, cfg, reference, device), files, names,
                                               partial, normal_scores)
        publish(out, partial, previous, names, rows, {
            "images": len(files), "maps": names, "prior": prior, "scorer": cfg.scorer, "category": category,
            "standardized": cfg.standardize, "calibrated_on_normal_test_images": normal_scores is not None,
            "threshold": args.threshold, "heat_map_vmax": None if normal_scores is None else float(normal_scores.max()),
            "run": str(run_dir), "model": trained.model_config.model, "device": str(device),
            "seconds": round(time.time() - t0, 2), "git_commit": commit, "command": args.command_line,
            "train_command": run["command"], "machine": machine()})
        return scores, percentiles
    scores, percentiles = write_locked(args, out, work)
    print(f"scored {len(files)} images with {run_dir} ({trained.model_config.model}, {describe_scoring(prior, cfg)}) "
          f"in {time.time() - t0:.1f} s -> {out / PREDICTIONS}, heat maps in {out / 'maps'}")
    for n in np.argsort(scores)[::-1][:5]:
        where = f"  above {percentiles[n]:.0f} % of normal test images" if percentiles else ""
        print(f"  {scores[n]:.4g}  {files[n]}{where}")
    return 0


def save_heat_picture(image, heat, vmax: float | None, path: Path) -> None:
    """The image beside its heat map (:func:`pvqae_lib.book.viz.heat_overlay`; ``vmax`` None: the map's
    own maximum), scaled up by whole pixels to at least 256 px high, as a PNG."""

    vmax = float(heat.max()) if vmax is None else vmax
    picture = np.concatenate([np.round(to_numpy_image(image) * 255).astype(np.uint8),
                              heat_overlay(image, heat, vmax)], axis=1)
    scale = max(1, 256 // picture.shape[0])
    Image.fromarray(picture).resize((picture.shape[1] * scale, picture.shape[0] * scale), Image.NEAREST).save(path)


def csv_text(text: str) -> str:
    """A text field of predictions.csv that a spreadsheet will not run: one starting with =, +, -, @,
    a tab or a carriage return gets a leading apostrophe (OWASP's CSV-injection rule); the csv
    module quotes the rest."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
