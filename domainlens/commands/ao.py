"""``domainlens ao-data``, ``ao-nmi``, ``ao-eval``, ``ao-cka``, ``ao-circuits``:
attribute-object compositional generalization (:mod:`training.attributes`): build an AO root
and its mixture, the attribute-object NMI of any caption TSV, a run's accuracy on held-out and
seen pairs, layerwise CKA between attribute values
(:func:`domainlens.ao_experiment.attribute_cka`) and circuits compared across them
(:func:`domainlens.ao_experiment.attribute_circuits`)."""

from __future__ import annotations

import argparse

DATA_DESCRIPTION = """\
Render an attribute-object spec (photo style) into a DomainNet-format root: objects with a
chosen colour and surface pattern, the training images under the entanglement knob (0: every
allowed value uniformly on every object; 1: each object bound to one value) with the held-out
(value, object) pairs removed, and the full test grid (every object x colour x pattern).
Writes <out>/real/..., <out>/images.csv and the training mixture
<out>/mixtures/real/ao-e<knob>.tsv + .json (spec, held-out pairs, caption NMI)."""

NMI_DESCRIPTION = """\
Normalized mutual information between attribute and object as named in the captions of a TSV
(a mixture, or any tab-separated file with a header: --caption-column names the captions'
column, e.g. caption for a CC3M subset). Each caption is parsed
for exactly one object (singular or plural, whole words) and exactly one attribute value;
others are skipped and counted. NMI = I(A;O) / mean(H(A), H(O)) by default (--average:
arithmetic, geometric, min, max; scikit-learn's normalized_mutual_info_score conventions)."""

EVAL_DESCRIPTION = """\
Score runs trained on an AO mixture on their root's test grid: object top-1 over all objects
("a photo of a cup."), attribute top-1 ("a photo of something blue."), pair top-1 over every
(value, object) prompt ("a photo of a blue cup."), on held-out pairs and on seen pairs
(supervised runs: object top-1 from the linear head). Writes <run>/eval/ao.csv per run (and
--out CSV with every run's rows): run, kind, seed, mixture_seed, entanglement, nmi, epoch,
attribute, pair_subset, metric, value, n_images."""


CKA_DESCRIPTION = """\
Layerwise CKA between the values of one attribute of an AO run (the cross-domain CKA with the
attribute value in place of the domain): per layer and pair of values, linear (or RBF) CKA
between the two values' object-class-mean activations on the root's test grid, rows aligned
by object; with the run's epoch-0 checkpoint as reference (reference column init). Writes
<run>/eval/ao_cka_<attribute>.csv and prints the mean over pairs per layer."""

CIRCUITS_DESCRIPTION = """\
Circuits of an AO run's objects compared across the values of one attribute (the cross-domain
circuit comparison with the attribute value in place of the domain): per object and value, the
circuit of the object's zero-shot logit on the test grid's images of that pair (attribution
patching from a zero baseline, top --fraction of units per site, top-3 incoming edges); then
node Jaccard per site, edge Jaccard and the WL kernel between two values of the same object,
with heldout_pair marking comparisons that involve a held-out pair, and the epoch-0
checkpoint as reference. Writes <run>/eval/ao_circuits_<attribute>.csv and prints the mean
WL kernel with and without held-out pairs."""


def _pair(text: str) -> tuple[str, str]:
    value, sep, obj = text.partition(":")
    if not sep or not value or not obj:
        raise argparse.ArgumentTypeError(f"held-out pair {text!r} must be VALUE:OBJECT, e.g. "
                                         "blue:cup")
    return value, obj


def register(subparsers: argparse._SubParsersAction) -> None:
    # defaults left to AOSpec (None here): --help does not import the generator
    data = subparsers.add_parser(
        "ao-data", help="build an attribute-object root and its training mixture",
        description=DATA_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    data.add_argument("--out", required=True, help="the AO root to write")
    data.add_argument("--objects", nargs="+", default=None, metavar="CLASS",
                      help="object classes (default: apple cup fish umbrella)")
    data.add_argument("--colours", nargs="+", default=None, metavar="COLOUR",
                      help="colour vocabulary (default: red green blue yellow)")
    data.add_argument("--patterns", nargs="+", default=None, metavar="PATTERN",
                      help="pattern vocabulary (default: plain striped dotted)")
    data.add_argument("--entanglement", type=float, default=0.0,
                      help="the knob in [0, 1] (default 0: decorrelated)")
    data.add_argument("--entangle", nargs="*", default=None, metavar="KIND",
                      help="attribute kinds the knob applies to (default: colour)")
    data.add_argument("--heldout", nargs="*", type=_pair, default=None, metavar="VALUE:OBJECT",
                      help="held-out pairs (default: one colour per object; none: give "
                      "--heldout with no pair)")
    data.add_argument("--n-train", type=int, default=None,
                      help="training images in total (default 1200)")
    data.add_argument("--n-test", type=int, default=None,
                      help="test images per object x colour x pattern (default 2)")
    data.add_argument("--image-size", type=int, default=None, help="default 32")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--captions", choices=("domain", "aligned"), default="domain")
    data.add_argument("--quiet", action="store_true")
    data.set_defaults(func=run_data)

    nmi = subparsers.add_parser(
        "ao-nmi", help="attribute-object NMI of a caption TSV",
        description=NMI_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    nmi.add_argument("tsv", metavar="TSV", help="caption TSV (filepath and title columns)")
    nmi.add_argument("--attributes", nargs="+", required=True, metavar="WORD",
                     help="attribute values (e.g. red blue green)")
    nmi.add_argument("--objects", nargs="+", required=True, metavar="NOUN",
                     help="object nouns or class folder names (traffic_light)")
    nmi.add_argument("--average", default="arithmetic",
                     help="normaliser of I(A;O): arithmetic (default), geometric, min, max")
    nmi.add_argument("--caption-column", default="title", metavar="NAME",
                     help="the TSV's caption column (default: title; a CC3M subset: caption)")
    nmi.add_argument("--out", default=None, metavar="CSV", help="write the result as a one-row CSV")
    nmi.add_argument("--table", default=None, metavar="CSV",
                     help="write the attribute x object contingency table")
    nmi.set_defaults(func=run_nmi)

    ev = subparsers.add_parser(
        "ao-eval", help="held-out and seen attribute-object pair accuracy of runs",
        description=EVAL_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("runs", nargs="+", metavar="RUN")
    ev.add_argument("--data", default=None, help="AO root (default: the run's manifest's)")
    ev.add_argument("--epoch", type=int, default=None, help="default: the latest")
    ev.add_argument("--batch-size", type=int, default=256)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--out", default=None, metavar="CSV", help="every run's rows in one CSV")
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=run_eval)

    cka = subparsers.add_parser(
        "ao-cka", help="layerwise CKA between the colours (or patterns) of an AO run",
        description=CKA_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    cka.add_argument("run", metavar="RUN")
    cka.add_argument("--attribute", default="colour", help="colour (default) or pattern")
    cka.add_argument("--epoch", type=int, default=None, help="default: the latest")
    cka.add_argument("--kernel", default="linear", help="linear (default) or rbf")
    cka.add_argument("--no-init", action="store_true", help="leave out the epoch-0 reference")
    cka.add_argument("--batch-size", type=int, default=64)
    cka.add_argument("--device", default="cpu")
    cka.add_argument("--quiet", action="store_true")
    cka.set_defaults(func=run_cka)

    circ = subparsers.add_parser(
        "ao-circuits", help="circuits of an AO run compared across colours (or patterns)",
        description=CIRCUITS_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    circ.add_argument("run", metavar="RUN")
    circ.add_argument("--attribute", default="colour", help="colour (default) or pattern")
    circ.add_argument("--epoch", type=int, default=None, help="default: the latest")
    circ.add_argument("--method", default="atp", help="node attribution: atp (default), ig")
    circ.add_argument("--fraction", type=float, default=0.1,
                      help="units kept per site (default 0.1)")
    circ.add_argument("--no-init", action="store_true", help="leave out the epoch-0 reference")
    circ.add_argument("--device", default="cpu")
    circ.add_argument("--quiet", action="store_true")
    circ.set_defaults(func=run_circuits)


def run_data(args: argparse.Namespace) -> int:
    from training.attributes import AOSpec, build_ao_dataset

    given = {"objects": args.objects, "colours": args.colours, "patterns": args.patterns,
             "entangle": args.entangle, "heldout_pairs": args.heldout,
             "n_train": args.n_train, "n_test": args.n_test, "image_size": args.image_size}
    spec = AOSpec(entanglement=args.entanglement, seed=args.seed, captions=args.captions,
                  **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()
                     if v is not None})
    built = build_ao_dataset(spec, args.out, progress=not args.quiet)
    nmi = ", ".join(f"{kind} {value:.4f}" for kind, value in built.nmi.items())
    print(f"{built.tsv}  (caption NMI with the object: {nmi})")
    return 0


def run_nmi(args: argparse.Namespace) -> int:
    import pandas as pd

    from training.attributes import tsv_nmi
    from training.util.files import write_csv

    result = tsv_nmi(args.tsv, args.attributes, args.objects, args.average, args.caption_column)
    total = result.n_parsed + result.n_skipped
    print(f"NMI(attribute; object) = {result.nmi:.4f} ({args.average}), I = "
          f"{result.mutual_information:.4f} nats, {result.n_parsed} of {total} captions parsed")
    if args.out:
        write_csv(args.out, pd.DataFrame([{"tsv": args.tsv, **result.summary()}]))
    if args.table:
        write_csv(args.table, result.table, index=True)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import pandas as pd

    from training.attributes import evaluate_ao
    from training.util.files import write_csv

    if args.batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {args.batch_size}")
    tables = []
    for run in args.runs:
        table = evaluate_ao(run, data_root=args.data, epoch=args.epoch,
                            batch_size=args.batch_size, device=args.device,
                            progress=not args.quiet)
        tables.append(table)
        held = table[(table["pair_subset"] == "held-out")]
        parts = [f"{r.attribute} {r.metric} {r.value:.3f}" for r in held.itertuples()]
        print(f"{table['run'].iloc[0]} held-out pairs: " + (", ".join(parts) or "none"))
    if args.out:
        write_csv(args.out, pd.concat(tables, ignore_index=True))
    return 0


def run_cka(args: argparse.Namespace) -> int:
    from domainlens.ao_experiment import attribute_cka
    from training.util.validate import check_device, check_number

    check_number("--batch-size", args.batch_size, low=1, integer=True)
    check_device("--device", args.device)
    table = attribute_cka(args.run, args.attribute, epoch=args.epoch, kernel=args.kernel,
                          references=() if args.no_init else ("init",),
                          batch_size=args.batch_size, device=args.device,
                          progress=not args.quiet)
    means = table.groupby(["reference", "layer_index", "layer"])["value"].mean().reset_index()
    for reference in table["reference"].unique():  # measured first, then the reference
        part = means[means["reference"] == reference]
        layers = ", ".join(f"{r.layer} {r.value:.3f}" for r in part.itertuples())
        print(f"{table['run'].iloc[0]} CKA between {args.attribute}s ({reference}): {layers}")
    return 0


def run_circuits(args: argparse.Namespace) -> int:
    from domainlens.ao_experiment import attribute_circuits
    from domainlens.experiments.circuits import CircuitSettings
    from training.util.validate import check_device

    check_device("--device", args.device)
    settings = CircuitSettings(method=args.method, fraction=args.fraction).validate()
    table = attribute_circuits(args.run, args.attribute, settings=settings, epoch=args.epoch,
                               references=() if args.no_init else ("init",),
                               device=args.device, progress=not args.quiet)
    wl = table[table["metric"] == "wl_kernel"]
    for reference in wl["reference"].unique():
        part = wl[wl["reference"] == reference].groupby("heldout_pair")["value"].mean()
        shown = ", ".join(f"{'with' if k else 'without'} a held-out pair {v:.3f}"
                          for k, v in part.items())
        print(f"{table['run'].iloc[0]} WL kernel between {args.attribute}s ({reference}): "
              f"{shown}")
    return 0
