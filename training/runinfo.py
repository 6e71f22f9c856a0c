"""What a training run is: the one reader of a run's metadata, used by every command.

A run directory holds ``run.json`` (kind, training settings, classes; written by
:mod:`training.train`), ``mixture.json`` (the run's copy of its mixture manifest: setup, test
domain, mixture seed, held-out classes, data root), ``model_config.json`` and
``checkpoints/epoch_<k>.pt``. :func:`read_run_info` reads them once into a :class:`RunInfo`;
evaluation, CKA, patching and circuits take setup, test domain, seeds, held-out classes, data
root and image normalisation from it, so their tables agree.

* ``seed`` is the *training* seed (``run.json`` ``settings.seed``); ``mixture_seed`` is the
  seed the mixture was drawn with (``mixture.json`` ``spec.seed``). They are independent: the
  runs ``-s0``, ``-s1``, ... of one mixture share its mixture seed.
* Held-out classes are the manifest's ``spec.heldout`` (folder or display names) resolved
  against the data root's class list; only a manifest without one falls back to the root's
  ``heldout_classes.txt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .domains import check_domains, display_name

#: Class subsets of a run's classes, spelled so in every table, config and option.
CLASS_SUBSETS: tuple[str, ...] = ("held-out", "seen", "all")


def _default_stats() -> tuple[tuple[float, ...], tuple[float, ...]]:
    # build_clip sets OpenCLIP's default preprocess config on every model it builds, and the
    # supervised baseline uses the same transform: the run's normalisation is that default.
    from open_clip.transform import PreprocessCfg

    default = PreprocessCfg()
    return tuple(default.mean), tuple(default.std)


@dataclass(frozen=True)
class RunInfo:
    """A run's metadata, read by :func:`read_run_info`.

    Attributes:
        run_dir: the run directory (``None`` for a model that is not a run, e.g. an OpenCLIP
            name with pretrained weights: see :mod:`training.sources`).
        kind: ``"clip"`` or ``"supervised"``.
        setup: the mixture's setup (``""`` if the manifest names none).
        test_domain: the mixture's test domain (``None`` if unknown).
        seed: the training seed (``None`` without ``run.json``, e.g. open_clip_train runs).
        mixture_seed: the seed the mixture was drawn with (``None`` if unknown).
        data_root: the DomainNet-format root (override, else the manifest's; ``None``: none).
        classes: every class folder name of the root, sorted (label = index); ``()`` when the
            root is not available.
        heldout: the held-out class folder names C2, sorted (``()`` without a root).
        image_size: the image tower's input side in pixels.
        mean, std: per-channel image normalisation the model was trained with.
        checkpoints: ``{epoch: path}`` of the completed checkpoints, in epoch order.
        model_config: the OpenCLIP model config.
        run_json: ``run.json`` as written (``{"kind": "clip"}`` if absent).
        manifest: ``mixture.json`` as written (``{}`` if absent).
        label: the ``model`` column of a non-run source (``RN50/openai``); ``""`` for a run.
        source: ``run``, ``openclip`` (name + pretrained), ``local-dir`` or ``hf-hub``.
        pretrained: the pretrained tag or weights file of an ``openclip`` source.
        location: the weights file or folder of a non-run source, if any.
        preprocess: OpenCLIP's preprocess config of a non-run source (``size``, ``mean``,
            ``std``, ``interpolation``, ``resize_mode``, ``fill_color``); ``{}`` for a run.
    """

    run_dir: Path | None
    kind: str
    setup: str
    test_domain: str | None
    seed: int | None
    mixture_seed: int | None
    data_root: Path | None
    classes: tuple[str, ...]
    heldout: tuple[str, ...]
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    checkpoints: dict[int, Path] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)
    run_json: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    source: str = "run"
    pretrained: str | None = None
    location: Path | None = None
    preprocess: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run's name (its directory name), or a non-run source's label."""
        return self.run_dir.name if self.run_dir is not None else self.label

    @property
    def model(self) -> str:
        """The tidy ``model`` column: name + pretrained tag (``RN50/openai``), or the run."""
        return self.label or self.name

    @property
    def is_run(self) -> bool:
        """Whether the model is a training run of this toolkit (with setup, seeds, epochs)."""
        return self.run_dir is not None

    @property
    def seen(self) -> tuple[str, ...]:
        """The seen classes C1: every class of the root that is not held out."""
        held = set(self.heldout)
        return tuple(c for c in self.classes if c not in held)

    def require_data(self) -> Path:
        """The data root, or a one-line error if the run names none or it does not exist."""
        if self.data_root is None:
            raise ValueError(
                f"no data root for {self.run_dir or self.name}: "
                + ("its mixture manifest names none" if self.is_run else "none was given")
                + "; pass one (--data)"
            )
        if not self.data_root.is_dir():
            raise FileNotFoundError(f"data root {str(self.data_root)!r} is not a directory")
        return self.data_root

    def subset(self, name: str) -> tuple[str, ...]:
        """Class folder names of the subset ``held-out``, ``seen`` or ``all``."""
        from .util.validate import check_choice

        name = check_choice("class subset", name, CLASS_SUBSETS)
        self.require_data()
        return {"held-out": self.heldout, "seen": self.seen, "all": self.classes}[name]

    def class_subset(self, class_name: str) -> str:
        """``held-out`` or ``seen``: which subset a class belongs to."""
        return "held-out" if class_name in set(self.heldout) else "seen"

    def meta(self, epoch: int | None = None, *, model: bool = False) -> dict[str, Any]:
        """Metadata columns of every tidy table: run, setup, test_domain, seed (training),
        mixture_seed, plus epoch when given; ``model=True`` puts the ``model`` column first."""
        out: dict[str, Any] = {"model": self.model} if model else {}
        out |= {"run": self.name, "setup": self.setup, "test_domain": self.test_domain,
                "seed": self.seed, "mixture_seed": self.mixture_seed}
        if epoch is not None:
            out["epoch"] = int(epoch)
        return out


def _int_or_none(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def resolve_heldout(names: Any, classes: tuple[str, ...], source: str, root: Path) -> tuple[str, ...]:
    """Held-out names (folder or display names) as sorted folder names of ``classes``."""
    by_display = {display_name(c): c for c in classes}
    heldout, unknown = [], []
    for name in names:
        folder = name if name in classes else by_display.get(name)
        (heldout if folder else unknown).append(folder or name)
    if unknown:
        raise ValueError(f"held-out classes {unknown} of {source} are not classes of {root}")
    return tuple(sorted(set(heldout)))


def read_run_info(
    run_dir: str | Path, data_root: str | Path | None = None,
    heldout: Sequence[str] | None = None,
) -> RunInfo:
    """Read a run's metadata (module docstring) into a :class:`RunInfo`.

    ``data_root`` overrides the manifest's root; an override must be a directory. ``heldout``
    (folder or display names) overrides the manifest's held-out classes. Without a
    usable root, ``classes`` and ``heldout`` are empty and :meth:`RunInfo.require_data`
    raises. Raises ``FileNotFoundError`` for a missing run directory or model config and
    ``ValueError`` for held-out classes that are not classes of the root.
    """
    # imported here so that CLASS_SUBSETS and RunInfo load without torch (the CLI's start-up)
    from . import checkpoints as ckpt
    from .domainnet import class_names, heldout_classes
    from .models import image_size as config_image_size
    from .models import read_model_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    run_json = ckpt.read_run_json(run_dir)
    manifest = ckpt.read_mixture_manifest(run_dir)
    spec = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
    root: Path | None = None
    if data_root is not None:
        root = Path(data_root).expanduser().resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"data root {str(root)!r} is not a directory")
    elif spec.get("data_root"):
        root = Path(spec["data_root"]).expanduser().resolve()
    if heldout and (root is None or not root.is_dir()):
        raise ValueError("held-out classes need a data root to resolve them against")
    classes: tuple[str, ...] = ()
    if root is not None and root.is_dir():
        classes = tuple(class_names(root))
        if heldout:
            heldout = resolve_heldout(heldout, classes, "the given held-out classes", root)
        elif spec.get("heldout"):
            heldout = resolve_heldout(spec["heldout"], classes, "the run's manifest", root)
        else:
            heldout = tuple(heldout_classes(root, classes))
    test_domain = spec.get("test_domain") or None
    if test_domain is not None:
        check_domains([test_domain])
    cfg = read_model_config(run_dir)
    mean, std = _default_stats()
    settings = run_json.get("settings") if isinstance(run_json.get("settings"), dict) else {}
    return RunInfo(
        run_dir=run_dir,
        kind=str(run_json.get("kind", "clip")),
        setup=str(spec.get("setup") or ""),
        test_domain=test_domain,
        seed=_int_or_none(settings.get("seed")),
        mixture_seed=_int_or_none(spec.get("seed")),
        data_root=root,
        classes=classes,
        heldout=tuple(heldout or ()),
        image_size=config_image_size(cfg),
        mean=mean,
        std=std,
        checkpoints=ckpt.list_checkpoints(run_dir),
        model_config=cfg,
        run_json=run_json,
        manifest=manifest,
    )


__all__ = ["CLASS_SUBSETS", "RunInfo", "read_run_info", "resolve_heldout"]
