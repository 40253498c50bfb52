"""``ms2study simulate OUTDIR``: write an LC-MS/MS study (DDA, positive mode) with known truth, in one of two modes.

Synthetic mode (without --background): every run is simulated from real metabolite structures
(resources/compounds.tsv) with in-silico MS/MS, DDA acquisition, noise and retention-time drift, and one chemical
class raised in cases. Its options: --profile demo|realistic (or --realistic), --batches, --qc-every, --blanks,
--adducts (a batch study with pooled QCs, blanks, drift and adduct ions) and --params (the settings, as JSON).

Spike-in mode (--background RUN.mzML --library LIB.mgf): each sample is a copy of one of your own centroided DDA
runs (e.g. a pooled QC) with per-sample variation, plus compounds of your MGF library spiked into MS1 and DDA MS2.
Its options: --library, --compounds, --n-changed and --fold-change (compounds of one class raised in cases),
--unknown-fraction (compounds left out of the written library), --library-size, --rt-drift-s and
--calibration-ppm (each sample's retention-time drift and mass calibration offset), --height-quantiles (the
compounds' abundance range). A library record is spiked
when it has ADDUCT=[M+H]+, INCHIKEY, a neutral FORMULA whose [M+H]+ m/z is its PEPMASS, COMPOUND_CLASS (not
needed with --n-changed 0), a precursor inside the run's m/z range and 3 or more fragment peaks; IONMODE and
LICENSE, when given, must be positive and a licence permitting commercial use (CC BY, CC BY-SA, CC0, dl-de/by-2-0).

Both modes take --samples, --seed and --overwrite, and write OUTDIR/mzml/*.mzML, samples.tsv, config.yaml,
library.mgf, ground_truth.tsv and simulation.json; an option of the other mode is refused. The study is built
in a hidden folder beside OUTDIR and moved into place when complete, so an interrupted run leaves OUTDIR as it
was; an OUTDIR that already holds a study is refused unless --overwrite. Then: ms2study run OUTDIR.
"""

# The --help text is this docstring, then (epilog) the docstrings of ``study`` and ``spikein``, which describe
# each mode in full. Options of one mode default to None, so that one given with the other mode is told apart
# from its default and refused instead of being silently ignored.

from __future__ import annotations

import argparse
import inspect
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from ms2study.core.errors import InputError
from ms2study.core.params import load_params
from ms2study.simulate import spikein, study
from ms2study.simulate.params import PROFILES

# dest -> how the option is spelled, per mode
SYNTHETIC_OPTIONS = {"profile": "--profile (or --realistic)", "batches": "--batches", "qc_every": "--qc-every",
                     "blanks": "--blanks", "adducts": "--adducts", "params": "--params"}
SPIKEIN_OPTIONS = {"library": "--library", "compounds": "--compounds", "n_changed": "--n-changed",
                   "fold_change": "--fold-change", "unknown_fraction": "--unknown-fraction",
                   "library_size": "--library-size", "rt_drift_s": "--rt-drift-s",
                   "calibration_ppm": "--calibration-ppm", "effect": "--effect",
                   "height_quantiles": "--height-quantiles"}
# option dest -> keyword of simulate_spikein; an option not given leaves the function's default
SPIKEIN_KEYWORDS = {"samples": "n_samples", "compounds": "n_compounds", "n_changed": "n_changed",
                    "fold_change": "fold_change", "unknown_fraction": "unknown_fraction",
                    "library_size": "library_size", "rt_drift_s": "rt_drift_s", "calibration_ppm": "calibration_ppm",
                    "effect": "effect", "height_quantiles": "height_quantiles"}


def _default(function: Callable, name: str):
    """The default of ``function``'s keyword ``name`` (the help text quotes the function's own defaults)."""
    return inspect.signature(function).parameters[name].default


def whole(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: the text as an int of at least ``minimum``; ArgumentTypeError (argparse then names
    the option and exits with status 2) otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"needs a whole number of at least {minimum} (got '{text}')")
        return value
    return parse


def number(low: float, high: float | None = None, *, low_inclusive: bool = True,
           high_inclusive: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: the text as a finite float in [``low``, ``high``) (``(low, ...`` without
    ``low_inclusive``, ``..., high]`` with ``high_inclusive``; no upper bound when ``high`` is None);
    ArgumentTypeError otherwise."""
    want = (f"{'at least' if low_inclusive else 'above'} {low:g}" +
            (f" and {'at most' if high_inclusive else 'below'} {high:g}" if high is not None else ""))

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        ok = value >= low if low_inclusive else value > low
        below = high is None or value < high or (high_inclusive and value == high)
        if not (ok and below and value != float("inf")):
            raise argparse.ArgumentTypeError(f"needs a number {want} (got '{text}')")
        return value
    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` subcommand (description: this module's docstring) to the ``ms2study`` parser."""
    p = subparsers.add_parser(
        "simulate",
        help="write a study with known truth: synthetic, or compounds spiked into your own run (--background)",
        description=__doc__,
        epilog=f"THE SYNTHETIC MODE IN DETAIL\n\n{study.__doc__}\nTHE SPIKE-IN MODE IN DETAIL\n\n{spikein.__doc__}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("outdir", type=Path, metavar="OUTDIR",
                   help="folder to write the study into (created if missing; one holding a study needs --overwrite)")
    both = p.add_argument_group("both modes")
    both.add_argument("--samples", type=whole(2), default=None, metavar="N",
                      help="number of samples, half of them cases (default "
                           f"{_default(study.simulate_study, 'n_samples')}, with --background "
                           f"{_default(spikein.simulate_spikein, 'n_samples')})")
    both.add_argument("--seed", type=whole(0), default=0, metavar="S",
                      help="random seed; the same seed gives identical files")
    both.add_argument("--overwrite", action="store_true",
                      help="replace the study already in OUTDIR (only one ms2study simulate wrote): files it "
                           "writes are replaced, identical ones left as they were (no rerun), nothing else deleted")
    synthetic = p.add_argument_group("synthetic mode (without --background)")
    synthetic.add_argument("--profile", choices=PROFILES, default=None,
                           help="demo (default: curated compounds, one class raised) or realistic (thousands of "
                                "background compounds, measured intensity distribution and variation, a sparse "
                                "planted effect)")
    synthetic.add_argument("--realistic", dest="profile", action="store_const", const="realistic",
                           help="same as --profile realistic")
    synthetic.add_argument("--batches", type=whole(1), metavar="N",
                           help="acquire in N batches: samples randomised over them, a batch offset and a drift with "
                                "injection order (params key batches; default 1)")
    synthetic.add_argument("--qc-every", type=whole(0), metavar="K", dest="qc_every",
                           help="a pooled QC (the mean of the samples) after every K samples and at each batch's "
                                "start (params key qc_every; default 0: none)")
    synthetic.add_argument("--blanks", type=whole(0), metavar="B",
                           help="B solvent blanks per batch, at its start and end: no compounds, contaminants as in "
                                "every run (params key blanks; default 0)")
    synthetic.add_argument("--adducts", action="store_const", const=True,
                           help="[M+Na]+, [M+NH4]+ and in-source fragment ions beside each compound (params key "
                                "adducts)")
    synthetic.add_argument("--params", default=None, metavar="JSON",
                           help="simulation settings as a JSON object (keys: ms2study.simulate.params); a flag wins "
                                "over its key")
    spike = p.add_argument_group("spike-in mode (--background RUN.mzML --library LIB.mgf)")
    spike.add_argument("--background", type=Path, metavar="RUN.mzML", nargs="+",
                       help="one of your centroided DDA runs (mzML): each sample is a copy of it plus compounds "
                            "spiked from --library; several injections of one sample (e.g. pooled QCs) alternate "
                            "over the samples, adding real run-to-run variation")
    spike.add_argument("--library", type=Path, metavar="LIB.mgf",
                       help="MGF (.gz too) the spiked compounds are drawn from (records: see above)")
    spike.add_argument("--compounds", type=whole(1), metavar="N", help="spiked compounds (default 60)")
    spike.add_argument("--n-changed", type=whole(0), dest="n_changed", metavar="N",
                       help="spiked compounds of one class raised in cases (default 12; 0: no planted effect)")
    spike.add_argument("--fold-change", type=number(0, low_inclusive=False), dest="fold_change", metavar="F",
                       help="their fold in cases (default 3)")
    spike.add_argument("--unknown-fraction", type=number(0, 1, high_inclusive=True), dest="unknown_fraction",
                       metavar="F", help="share of spiked compounds left out of the written library (default 1/3; "
                                         "1: none of them in it, so every name on a spiked compound is wrong)")
    spike.add_argument("--library-size", type=whole(1), dest="library_size", metavar="N",
                       help="at most this many records in the written library (default: all usable)")
    spike.add_argument("--rt-drift-s", type=number(0), dest="rt_drift_s", metavar="S",
                       help="sd of each sample's retention-time shift in seconds; a stretch and a smooth warp "
                            f"scale with it (default {_default(spikein.simulate_spikein, 'rt_drift_s')}; 0: none)")
    spike.add_argument("--calibration-ppm", type=number(0), dest="calibration_ppm", metavar="PPM",
                       help="sd of each sample's m/z calibration offset in ppm (default "
                            f"{_default(spikein.simulate_spikein, 'calibration_ppm')}; 0: none)")
    spike.add_argument("--height-quantiles", type=number(0, 1, high_inclusive=True), nargs=2,
                       dest="height_quantiles", metavar=("LOW", "HIGH"),
                       help="draw the compounds' apex heights log-uniformly between these quantiles of the "
                            "background's MS1 intensities (default 0.05 0.995). A compound whose apex stays below "
                            "the run's DDA trigger (about the 0.97 quantile in the Q Exactive examples) gets no "
                            "MS/MS, as in a real DDA run: 0.05 0.5 makes a low-abundance study with no spiked MS/MS "
                            "at all, 0.9 0.99 weak compounds that are fragmented; the summary prints how many spiked "
                            "MS/MS scans were written")
    spike.add_argument("--effect", choices=spikein.EFFECTS, default=None,
                       help="what the changed compounds follow: 'group' (fold in cases; default) or 'score', a "
                            "continuous outcome column (0-10) whose range spans the fold")
    p.set_defaults(func=run)


def _flags(flags: list[str], short: bool = False) -> str:
    """"--a", "--a and --b", "--a, --b and --c": the options as named (``short``: their first word alone)."""
    names = [f.split()[0] for f in flags] if short else flags
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def check_mode(args: argparse.Namespace) -> None:
    """Raise InputError naming every option given that belongs to the other mode than ``args.background`` selects
    (it would be ignored), and, where options of both modes were given, those of each (trial AZ went through three
    refusals of one option each to learn that --effect score needs --background and excludes --realistic)."""
    synthetic = [flag for dest, flag in SYNTHETIC_OPTIONS.items() if getattr(args, dest) is not None]
    spike = [flag for dest, flag in SPIKEIN_OPTIONS.items() if getattr(args, dest) is not None]
    if args.background is not None:
        if synthetic:
            verb = "belongs" if len(synthetic) == 1 else "belong"
            raise InputError(f"{_flags(synthetic)} {verb} to the synthetic mode; with --background (the spike-in "
                             "mode) they would be ignored", fix=f"drop {_flags(synthetic, True)}, or drop --background "
                                                                "for a synthetic study")
        if args.library is None:
            raise InputError("--background needs --library (the spike-in mode)",
                             fix="pass --library LIB.mgf, the MGF library the spiked compounds are drawn from")
        return
    if spike:
        verb = "belongs" if len(spike) == 1 else "belong"
        both = (f"; {_flags(synthetic)} {'belongs' if len(synthetic) == 1 else 'belong'} to the synthetic mode, so "
                "one of the two sets must go" if synthetic else "")
        raise InputError(f"{_flags(spike)} {verb} to the spike-in mode, which --background (with --library) "
                         f"selects; without it (the synthetic mode) they would be ignored{both}",
                         fix=f"pass --background RUN.mzML --library LIB.mgf too (a centroided DDA run of yours and "
                             f"the library to spike from), or drop {_flags(spike, True)}")


def _terminated(signum: int, _frame) -> None:
    raise SystemExit(128 + signum)  # unwinds study_folder, which removes the half-written study


def run(args: argparse.Namespace) -> int:
    """Run ``ms2study simulate`` (parsed ``args``): check the mode's options, write the study, print a short
    summary (``summary_text``; the full one is the study's simulation.json). Raises InputError for an option of the
    other mode or a bad input (nothing is written then); SIGTERM (a cluster's or Snakemake's stop) exits with 143
    after removing the half-written study, as Ctrl-C does."""
    check_mode(args)
    try:
        previous = signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread (an embedding caller): its own handling stays
        return _simulate(args)
    try:
        return _simulate(args)
    except KeyboardInterrupt:  # study_folder has removed the half-written study
        print(f"ms2study simulate: interrupted; {args.outdir} is as it was before", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _simulate(args: argparse.Namespace) -> int:
    if args.background is not None:
        given = {word: getattr(args, dest) for dest, word in SPIKEIN_KEYWORDS.items()
                 if getattr(args, dest) is not None}
        summary = spikein.simulate_spikein(args.outdir, args.background, args.library, seed=args.seed,
                                           overwrite=args.overwrite, **given)
    else:
        params = load_params(argparse.Namespace(params=args.params or "{}"))
        for key in ("batches", "qc_every", "blanks", "adducts"):
            if getattr(args, key) is not None:  # a flag given wins over the same key in --params
                params[key] = getattr(args, key)
        samples = {"n_samples": args.samples} if args.samples is not None else {}
        summary = study.simulate_study(args.outdir, seed=args.seed, params=params, profile=args.profile or "demo",
                                       overwrite=args.overwrite, **samples)
    print(summary_text(summary, Path(args.outdir)))
    return 0


def planted_detail(truth_path: Path) -> str:
    """What the changed compounds of ``ground_truth.tsv`` (either mode) are in these samples: their planted folds'
    range where they differ and their realised folds' range (``realised_fold``). Trial BA scored a study announced
    as "5 compounds 1.5x higher" whose folds ran from 1.19 to 1.84. (How many lie below the noise, from
    ``above_noise``, was said too until trial BE found 3 of 4 such compounds among the top hits: it does not measure
    what detection finds.) Empty without changed compounds or those columns."""
    import polars as pl

    try:
        truth = pl.read_csv(truth_path, separator="\t", infer_schema_length=10000)
    except (OSError, pl.exceptions.PolarsError):
        return ""
    if not {"changed", "fold", "realised_fold", "compound_id"} <= set(truth.columns):
        return ""
    if "sample_type" in truth.columns:
        truth = truth.filter(pl.col("sample_type") == "sample")
    per = (truth.filter(pl.col("changed")).group_by("compound_id")
           .agg(pl.col("fold").first(), pl.col("realised_fold").first()))
    if per.is_empty():
        return ""
    def span(column: str) -> str:
        low, high = float(per[column].min()), float(per[column].max())
        return f"{low:.2f}x" if high - low < 0.005 else f"{low:.2f}x to {high:.2f}x"

    planted = "" if float(per["fold"].max()) - float(per["fold"].min()) < 0.005 else f"planted {span('fold')}, "
    return (f"the {per.height} changed compounds: {planted}realised {span('realised_fold')} in these samples "
            "(ground_truth.tsv: fold, realised_fold)")


def summary_text(summary: dict, outdir: Path) -> str:
    """What ``ms2study simulate`` wrote, in a few lines: the samples and cases, the planted effect, where the truth
    and the full design (``simulation.json``, the ``summary`` dict of either mode) are, and the next command."""
    n, cases = summary.get("n_samples"), len(summary.get("cases") or [])
    if summary.get("background"):
        runs = " and ".join(summary.get("backgrounds") or [summary["background"]])  # several alternate
        made = (f"{summary.get('n_compounds')} library compounds spiked into copies of {runs} "
                f"({summary.get('n_known_unknowns', 0)} of them left out of the written library: known unknowns)")
    else:
        made = f"{summary.get('n_compounds')} compounds simulated ({summary.get('n_ms2_spectra')} MS/MS spectra)"
    changed = summary.get("n_changed", len(summary.get("changed_compounds") or []))
    effect = (f"planted effect: {f'{changed} ' if changed else ''}compounds of class '{summary.get('planted_class')}' "
              f"{summary.get('fold_change')}x higher in the cases" if summary.get("planted_class")
              else "no planted effect")
    if summary.get("planted_class") and summary.get("effect") == "score":  # a trial read "higher in the cases"
        effect = (f"planted effect: {f'{changed} ' if changed else ''}compounds of class "
                  f"'{summary.get('planted_class')}' follow the sheet's score (0 to 10): {summary.get('fold_change')}x "
                  "from the lowest to the highest score; group (case / control) carries no planted effect")
    ages = summary.get("age_compounds") or []
    if ages:  # a trial's "no planted effect" study still had its age compounds, unsaid
        # by name only: "C237" read as the report's consensus feature C237 (trial AP), and "sphinganine (ground_truth
        # compound_id C237)" still led a user to the report's C237, another compound (trial AY)
        names = summary.get("age_compound_names") or [None] * len(ages)
        effect += (f"; {len(ages)} compounds rise with the sheet's age (params key n_age_compounds, 0 for none): "
                   + ", ".join(n if n else f"ground_truth.tsv compound {i}" for i, n in zip(ages, names))
                   + " (find them in the report by name, m/z and RT: ground_truth.tsv's compound ids are not the "
                   "report's consensus feature ids)")
    lines = [f"ms2study simulate: wrote {outdir}: {n} samples ({cases} case{'' if cases == 1 else 's'}), {made}",
             f"  {effect}"]
    if summary.get("background") and summary.get("n_spiked_ms2") is not None:
        where = (summary.get("background_measured") or {}).get("dda_threshold_quantile")
        trigger = f" (at the {where:.3f} quantile of the run's MS1 intensities)" if where is not None else ""
        lines.append(f"  {summary['n_spiked_ms2']} MS/MS scans of spiked compounds written"
                     + ("" if summary["n_spiked_ms2"] else
                        f": every spiked apex lies below the run's DDA trigger{trigger}, so none of them can be "
                        "identified; raise --height-quantiles HIGH above it for fragmented compounds"))
    detail = planted_detail(outdir / "ground_truth.tsv")
    if detail:
        lines.append(f"  {detail}")
    return "\n".join([
        *lines,
        f"  truth: {outdir / 'ground_truth.tsv'}; design and parameters: {outdir / 'simulation.json'}",
        f"  next: ms2study run {outdir}",
    ])
