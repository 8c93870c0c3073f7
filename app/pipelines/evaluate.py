"""Evaluate a registry model on validation and test: metrics, confusion matrices, error tables.

    python app/pipelines/evaluate.py --dataset digits            # the registry's to_evaluate
    python app/pipelines/evaluate.py --model digits-convnet:v3 --promote

The data is the dataset version the model was trained on (from its recipe), unless --data.
With --promote, `production` moves to this model only if it was evaluated on its own dataset
version and its test accuracy beats production's on the same split (or there is none yet), and
reaches --min-accuracy when given; a refused promotion exits with status 3 (a model that already
is production is no refusal). A self-contained HTML report (metrics, confusion matrices,
the most confident errors as images, production beside the model) is written next to the run,
logged to it and kept in the evaluation artifact.
"""
from __future__ import annotations

import sys

from app import model_card, names
from app.cli import Parser, add_model_flags, non_negative_int, unit_interval
from app.errors import PROMOTION_REFUSED, UserError, exits_cleanly
from app.progress import detail
from app.recipe.config import stream_workers

SPLITS = ("val", "test")


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0])
    add_model_flags(p, names.TO_EVALUATE, "WANDB_MODEL_EVAL, else wandb-registry-model/<dataset>-<arch>:to_evaluate")
    p.add_argument("--data", metavar="REF", help="dataset ref instead of the model's own dataset version")
    p.add_argument("--promote", action="store_true",
                   help="move 'production' here if better than production on the same test split (refused: exit status 3)")
    p.add_argument("--promote-ties", action="store_true",
                   help="with --promote: a tie with production promotes too")
    p.add_argument("--min-accuracy", type=unit_interval, default=None, metavar="A",
                   help="with --promote: never promote below this test accuracy (0..1), not even a first model")
    p.add_argument("--no-generate-images", dest="generate_images", action="store_false",
                   help="leave the image column out of the error-analysis tables")
    p.add_argument("--label-issues", choices=("none", "val-test", "train"), default="val-test",
                   help="list images whose label the model doubts (cleanlab's confident learning) in a label_issues "
                        "table and the report: val-test (default) on the model's own predictions; train also checks "
                        "the training split with 5-fold out-of-fold predictions of the same recipe (5 trainings: slow)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="inference device")
    p.add_argument("--workers", type=non_negative_int, default=stream_workers(), metavar="N",
                   help=f"DataLoader processes that read (and, for a split of references, decode) the split's "
                        f"images (default {stream_workers()}: a core each, one left; 0: this process reads them)")
    return p.parse_args(argv)


@exits_cleanly
def main(argv=None) -> None:
    args = parse_args(argv)
    from app.tracking.settings import load_settings

    settings = load_settings()
    from app.tracking import backend, discovery

    model_ref = (args.model or settings.model_eval
                 or discovery.registry_model(backend(), names.TO_EVALUATE, args.dataset, args.arch))

    import tempfile
    from pathlib import Path

    from app.data.split_files import read_split
    from app.evaluation import gate, html_report, report
    from app.evaluation.promotion import consume_to_evaluate, production_on_split, promote_if_still_better
    from app.serving.onnx_export import log_export
    from app.inference import probabilities
    from app.evaluation.metrics import classification_report
    from app.models.files import load_model
    from app.training.engine import pick_device
    from app.tracking import start_run

    with start_run("evaluate", {"model": model_ref, "data": args.data, "promote": args.promote}) as run:
        device = pick_device(args.device)
        model_version = run.use(model_ref, names.MODEL_TYPE)
        model, recipe = load_model(model_version.path, device)
        data_ref = args.data or recipe.dataset.ref
        if args.data:
            print(f"note: evaluating on {args.data} instead of the model's own {recipe.dataset.ref}",
                  file=sys.stderr)
        dataset = run.use(data_ref, names.DATASET_TYPE)
        split = read_split(dataset.path, mapped=True, ref=dataset.ref)  # images read where used: a split may exceed memory
        run.update_config({"model_version": model_version.ref, "dataset_ref": dataset.ref, "arch": recipe.arch})

        results, probs, shown = {}, {}, {}
        for name in SPLITS:
            probs[name] = probabilities(model, split.images[name], device, recipe, workers=args.workers)
            results[name] = classification_report(probs[name], split.labels[name], len(split.class_names))
            detail(f"{name}: accuracy {results[name]['accuracy']:.4f}  loss {results[name]['loss']:.4f}  "
                   f"macro F1 {results[name]['macro_f1']:.4f}  ECE {results[name]['ece']:.4f}")
            shown[name] = report.log_split(run, name, results[name], probs[name], split.labels[name],
                                           split.images[name], split.class_names, args.generate_images)
        issues = find_label_issues(args.label_issues, probs, split, recipe, device)
        issues_shown = None
        if issues is not None:
            issues_shown = {"checked": list(issues["checked"]), "count": len(issues["rows"]),
                            "shown": report.log_label_issues(run, issues["rows"], split.images, split.class_names,
                                                             args.generate_images)}
        gap = results["val"]["accuracy"] - results["test"]["accuracy"]
        summary = {f"{s}_{k}": results[s][k] for s in SPLITS for k in ("accuracy", "loss", "macro_f1", "ece")}
        summary["val_test_gap"] = gap
        run.summary(summary)

        collection = names.model_artifact(recipe.dataset.name, recipe.arch)
        own_data = dataset.digest == recipe.dataset.digest

        def judge():
            """(production, the gate's decision against it), read now."""
            production = production_on_split(run, collection, model_version, dataset, split, device, args.workers)
            if production and production.get("comparable") and not production.get("same_model"):
                print(f"side by side on {dataset.ref} test: this {results['test']['accuracy']:.4f}  "
                      f"production {production['test_accuracy']:.4f} ({production['ref']})")
            return production, gate.decide(results["test"]["accuracy"], production, own_data=own_data,
                                           ties=args.promote_ties, min_accuracy=args.min_accuracy)

        production, decision = judge()
        run.summary({"promotion_eligible": decision.promote, "promotion_reason": decision.reason})

        # A page that shows the errors and how the model trained offline too (W&B's offline table
        # files only point at media; its charts need `wandb sync`).
        history = model_version.metadata.get("history")
        page = html_report.render(model_ref=model_version.ref, dataset_ref=dataset.ref, class_names=split.class_names,
                                  splits=shown, decision=decision.reason,
                                  comparison=production if production and "test_accuracy" in production else None,
                                  curves_png=html_report.figure_png(report.learning_curves_figure(history))
                                  if history else None, label_issues=issues_shown)
        report_path = run.dir / "evaluation-report.html"
        report_path.write_text(page, encoding="utf-8")
        run.log({"report": run.html(page)})

        own = model_card.own_card(model_version.path, recipe, model_version.metadata,
                                  dataset.metadata if own_data else {}, collection)

        def card(promoted: bool | None) -> str:
            """The model's card completed with this evaluation (app/model_card.py); `promoted`
            None: not known yet (the evaluation artifact is logged before the promotion)."""
            outcome = ("promotion not asked (--promote)" if not args.promote else
                       "promotion asked: the registry's description says whether it landed" if promoted is None else
                       "promoted to production" if promoted else "not promoted")
            gate_line = f"the gate {'promotes' if decision.promote else 'refuses'}: {decision.reason}; {outcome}."
            return model_card.evaluated_card(own, {
                "run": run.id, "dataset": dataset.ref, "own_data": own_data, "results": results,
                "class_names": split.class_names, "gate": gate_line}, model_version.metadata)

        with tempfile.TemporaryDirectory() as tmp:
            files = {f"{s}_predictions.csv": report.write_predictions(Path(tmp) / f"{s}_predictions.csv", probs[s],
                                                                      split.labels[s], split.class_names)
                     for s in SPLITS}
            files["report.html"] = report_path
            for s, name in model_card.CONFUSION_FILES.items():  # the card's images, beside it
                files[name] = Path(tmp) / name
                files[name].write_bytes(shown[s]["confusion_png"])
            files[model_card.CARD_FILE] = Path(tmp) / model_card.CARD_FILE
            files[model_card.CARD_FILE].write_text(card(promoted=None), encoding="utf-8")
            if issues is not None:
                files["label_issues.csv"] = report.write_label_issues(Path(tmp) / "label_issues.csv", issues["rows"],
                                                                      split.class_names)
            evaluation = run.log_artifact(
                names.evaluation_artifact(recipe.dataset.name, recipe.arch), names.EVALUATION_TYPE, files,
                {"model": model_version.ref, "model_digest": model_version.digest, "dataset": dataset.ref,
                 "dataset_digest": dataset.digest, "metrics": summary, "per_class": {s: results[s]["per_class"] for s in SPLITS},
                 "production": production, "promotion": {"eligible": decision.promote, "reason": decision.reason},
                 **({"label_issues": issues["counts"]} if issues is not None else {})})

        promoted = exported = None
        if args.promote and decision.promote:
            # another promotion may land first: then decided again against the model it promoted
            promoted, production, decision = promote_if_still_better(run, model_version, collection, production,
                                                                     decision, judge)
            if promoted:
                consume_to_evaluate(run, model_version)  # evaluated: no later step picks it again
                exported = log_export(run, model_version, model, recipe)  # production, servable without this repo
        run.summary({"promoted": bool(promoted), "promotion_eligible": decision.promote,
                     "promotion_reason": decision.reason})
        try:  # the version's description in the registry: its card, as evaluated now
            run.backend.describe(model_version.ref, card(promoted=bool(promoted)))
        except UserError as err:
            print(f"warning: {err}", file=sys.stderr)

    print(f"evaluated {model_version.ref} on {dataset.ref}: val accuracy {results['val']['accuracy']:.4f}, "
          f"test accuracy {results['test']['accuracy']:.4f}, val-test gap {gap:+.4f}, "
          f"test macro F1 {results['test']['macro_f1']:.4f}, test ECE {results['test']['ece']:.4f}")
    if issues is not None:
        print(f"label issues: {len(issues['rows'])} candidate(s) ("
              f"{', '.join(f'{s} {n}' for s, n in issues['counts'].items())}): the label_issues table and the report")
    print(f"evaluation artifact: {evaluation.ref}, report: {report_path}")
    if args.promote:
        print(f"promotion: {'promoted to ' + promoted if promoted else 'refused'} ({decision.reason})")
        if exported:
            print(f"onnx export: {exported.ref}")
        if not promoted and not decision.already:
            sys.exit(PROMOTION_REFUSED)
    else:
        print(f"promotion: not asked (--promote); the gate would {'promote' if decision.promote else 'refuse'}: "
              f"{decision.reason}")


def find_label_issues(which: str, probs: dict, split, recipe, device) -> dict | None:
    """--label-issues: the candidates (app/evaluation/label_issues.py) on val and test, and with
    `train` on the training split's out-of-fold predictions too; None for `none`."""
    if which == "none":
        return None
    from app.evaluation import label_issues

    rows = label_issues.candidates(probs, {s: split.labels[s] for s in probs})
    checked = list(probs)
    if which == "train":  # judged apart: its probabilities come from other models (one per fold)
        from app.training.out_of_fold import out_of_fold_probabilities

        rows += label_issues.candidates({"train": out_of_fold_probabilities(recipe, split, device)},
                                        {"train": split.labels["train"]})
        checked = ["train", *checked]
    return {"checked": checked, "rows": rows, "counts": label_issues.counts(rows, checked)}


if __name__ == "__main__":
    main()
