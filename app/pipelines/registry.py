"""The artifact store and the W&B model registry from the shell, on either backend.

    python app/pipelines/registry.py list [COLLECTION] [--json] [--all]
    python app/pipelines/registry.py prune [--keep 3] [--yes]          # what nothing holds, beyond the newest 3
    python app/pipelines/registry.py link digits-convnet:v3 digits-convnet --alias candidate
    python app/pipelines/registry.py alias wandb-registry-model/digits-convnet:v1 production
    python app/pipelines/registry.py export wandb-registry-model/digits-convnet:production   # -> digits-convnet-onnx
    python app/pipelines/registry.py card wandb-registry-model/digits-convnet:production     # its model card
    wandb sync wandb/offline-run-* && python app/pipelines/registry.py push [--dry-run]
    python app/pipelines/registry.py push --dry-run      # before a login: the plan from the store alone
    python app/pipelines/registry.py watch [--hooks hooks.yaml] [--every 30] [--once]   # run hooks on alias moves

COLLECTION is an artifact name (`digits-split`) or a registry collection
(`wandb-registry-model/digits-convnet`).
"""
from __future__ import annotations

import json
from pathlib import Path

from app import names
from app.cli import Parser, command, positive_float, positive_int
from app.errors import exits_cleanly

# Metadata keys worth a column in the human listing, first match wins.
METRIC_KEYS = ("test_accuracy", "best_val_accuracy", "val_accuracy")


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="collections and versions with aliases, metrics and lineage")
    ls.add_argument("collection", nargs="?", help="only this collection")
    ls.add_argument("--json", action="store_true", help="one JSON document, for machines")
    ls.add_argument("--all", action="store_true", help="checkpoints too (training state, for --resume)")
    prune = sub.add_parser("prune", help="delete the versions nothing holds beyond the newest K of each collection "
                                         "(no alias but latest, no run used them, no registry link): a plan, "
                                         "--yes to delete")
    prune.add_argument("--keep", type=positive_int, default=3, metavar="K", help="newest versions kept per collection")
    prune.add_argument("--yes", action="store_true", help="delete them (default: print the plan, change nothing)")
    link = sub.add_parser("link", help="link an artifact version into a registry collection")
    link.add_argument("ref", help="the version to link, e.g. digits-convnet:v3")
    link.add_argument("collection", help="registry collection, e.g. digits-convnet")
    link.add_argument("--alias", action="append", default=[], help="alias to set on the linked version (repeatable)")
    alias = sub.add_parser("alias", help="move an alias to a version (it leaves the version that had it)")
    alias.add_argument("ref", help="the version to get the alias")
    alias.add_argument("alias", help="the alias, e.g. production")
    export = sub.add_parser("export", help="log a model version's ONNX export (<collection>-onnx, type onnx)")
    export.add_argument("ref", help="the model version, e.g. wandb-registry-model/digits-convnet:production")
    card = sub.add_parser("card", help="print a model version's card (model_card.md): the evaluated one when it "
                                       "was evaluated, else the one train.py wrote")
    card.add_argument("ref", help="the model version, e.g. wandb-registry-model/digits-convnet:production")
    push = sub.add_parser("push", help="after `wandb sync`: replay the embedded store's run inputs, registry "
                                       "links and aliases into W&B (online; idempotent)")
    push.add_argument("--dry-run", action="store_true",
                      help="print the plan, change nothing (offline: the plan from the store alone)")
    push.add_argument("--wandb-dir", type=Path, default=Path("wandb"),
                      help="folder of the offline run folders, for the `wandb sync` hints")
    watch = sub.add_parser("watch", help="follow the registry's aliases and run the hooks of hooks.yaml once per "
                                         "alias move (online and offline)")
    watch.add_argument("--hooks", type=Path, default=Path("hooks.yaml"), help="the hooks file (hooks.example.yaml "
                                                                              "shows the schema)")
    watch.add_argument("--state", type=Path, default=Path(".hooks-state.json"),
                       help="where the watcher records positions and what ran (a restart runs nothing twice)")
    watch.add_argument("--every", type=positive_float, default=30.0, metavar="SECONDS", help="seconds between polls")
    watch.add_argument("--once", action="store_true",
                       help="poll once, run what it calls for, wait for it and exit (status 1 when a hook gave up)")
    return p.parse_args(argv)


def metric_of(metadata: dict) -> str:
    metrics = metadata.get("metrics", {})
    for key in METRIC_KEYS:
        if key in metrics:
            return f"{key}={metrics[key]:.4f}"
    return ""


@exits_cleanly
def main(argv=None) -> None:
    args = parse_args(argv)
    from app.tracking.settings import load_settings
    from app.tracking import backend

    if args.command == "push":
        return push(args)
    if args.command == "watch":
        return watch(args)
    if args.command == "export":
        return export(args.ref)
    if args.command == "card":
        return print_card(args.ref)
    store = backend()
    if args.command == "list":
        rows = store.list(args.collection)
        hidden = [] if args.all or args.collection else [r for r in rows if r.type == names.CHECKPOINT_TYPE]
        rows = [r for r in rows if r not in hidden]
        if args.json:
            print(json.dumps({"versions": [r.as_json() for r in rows]}, indent=1, sort_keys=True))
            return
        if not rows:
            print(f"no artifacts yet: run `{command('data_prep')} --dataset digits` first.")
        for r in rows:
            users = ", ".join(u.get("job_type") or "?" for u in r.used_by) or "-"
            print(f"{r.collection:40} v{r.version:<3} {r.type:10} {r.digest[:8]}  "
                  f"[{', '.join(r.aliases)}]  {metric_of(r.metadata)}  used by: {users}")
        if hidden:
            print(f"(and {len(hidden)} checkpoint version(s) of unfinished runs: --all lists them)")
        size = store.size()
        if size is not None:
            print(f"store: {size / 2**20:.1f} MB in {load_settings().store_dir}  "
                  f"(`{command('registry')} prune` plans what can go)")
    elif args.command == "prune":
        return prune(store, args.keep, args.yes)
    elif args.command == "link":
        linked = store.link(args.ref, args.collection, args.alias)
        print(f"linked {args.ref} -> {linked.ref} (aliases: {', '.join(linked.aliases)})")
    else:
        moved, previous = store.set_alias(args.ref, args.alias)
        came_from = f" (taken from {previous})" if previous and previous != f"v{moved.version}" else ""
        print(f"alias {args.alias!r} -> {moved.ref}{came_from}")


def prune(store, keep: int, delete: bool) -> None:
    from app.tracking.retention import prune_plan

    doomed = prune_plan(store.list(), keep)
    if not doomed:
        print(f"nothing to prune: beyond the newest {keep} of each collection, every version is held by an alias, "
              "a run that used it or a registry link.")
        return
    for version in doomed:
        print(f"{'deleting' if delete else 'would delete'} {version.ref}  ({version.type}, nothing holds it)")
    if not delete:
        print(f"plan: {len(doomed)} version(s), nothing changed; `{command('registry')} prune --keep {keep} --yes` "
              "deletes them.")
        return
    before = store.size()
    store.delete(doomed)
    freed = f", {(before - store.size()) / 2**20:.1f} MB freed" if before is not None else ""
    print(f"deleted {len(doomed)} version(s){freed}.")


def export(ref: str) -> None:
    """One run that uses the model version and logs its export: lineage model -> export."""
    from app.serving.onnx_export import log_export
    from app.models.files import load_model
    from app.tracking import start_run

    with start_run("export", {"model": ref}) as run:
        model_version = run.use(ref, names.MODEL_TYPE)
        model, recipe = load_model(model_version.path)
        exported = log_export(run, model_version, model, recipe)
    print(f"onnx export: {exported.ref} (of {model_version.ref}, digest {model_version.digest[:8]})")


def print_card(ref: str) -> None:
    """The version's evaluated card: its description (evaluate.py's, the newest), else the newest
    evaluation artifact's of the same weights (when the description could not be saved); else the
    card train.py wrote, else (a model logged before cards) one written from its recipe."""
    from app import model_card
    from app.recipe import Recipe
    from app.tracking import backend, discovery

    connected = backend()
    model_version = connected.fetch(ref, names.MODEL_TYPE)
    if model_card.is_evaluated(model_version.description):
        print(model_version.description, end="")
        return
    recipe = Recipe.load(model_version.path)
    evaluation = discovery.newest_evaluation(
        connected, names.evaluation_artifact(recipe.dataset.name, recipe.arch), model_version.digest)
    if evaluation is not None and (evaluation.path / model_card.CARD_FILE).is_file():
        print((evaluation.path / model_card.CARD_FILE).read_text(encoding="utf-8"), end="")
        return
    if model_version.description:
        print(model_version.description, end="")
        return
    dataset = connected.lookup(recipe.dataset.ref) if recipe.dataset.ref else None
    print(model_card.own_card(model_version.path, recipe, model_version.metadata, dataset.metadata if dataset else {},
                              names.model_artifact(recipe.dataset.name, recipe.arch)), end="")


def push(args) -> None:
    from app.errors import UserError
    from app.tracking.settings import load_settings
    from app.tracking import backend
    from app.tracking.push import push as replay
    from app.tracking.store import Store

    settings = load_settings()
    if settings.offline and args.dry_run:
        return offline_dry_run(settings, args.wandb_dir)
    if settings.offline:
        raise UserError("push writes to W&B: log in first (`wandb login`, or WANDB_API_KEY in app/.env), "
                        "with WANDB_MODE unset or online. `push --dry-run` shows the plan without a login.")
    plan = replay(backend(), Store(settings.store_dir), args.wandb_dir, args.dry_run)
    for run_id, sync in sorted(plan.unsynced.items()):
        print(f"not in W&B yet, skipped: run {run_id}; upload it first: {sync}")
    if not plan.steps:
        print("nothing to push: W&B already has every synced version's inputs, links and aliases.")
    elif args.dry_run:
        print(f"plan ({len(plan.steps)} steps, nothing changed: --dry-run):")
        for step in plan.steps:
            print(f"  {step.kind:5} {step.text}")
    else:
        print(f"pushed {len(plan.steps)} steps to W&B.")


def offline_dry_run(settings, wandb_dir: Path) -> None:
    """The plan from the store alone, and what it could not check without W&B."""
    from app.tracking.push import offline_plan
    from app.tracking.store import Store

    plan = offline_plan(Store(settings.store_dir), settings.project, wandb_dir)
    print(f"plan from the store alone ({len(plan.steps)} steps at most, nothing changed: --dry-run, offline):")
    for step in plan.steps:
        print(f"  {step.kind:5} {step.text}")
    for run_id, why in sorted(plan.unsynced.items()):
        print(f"  run {run_id}: {why}; push skips it until it is synced")
    print("not checked without a login: which runs `wandb sync` has uploaded, and which of these steps W&B already "
          "has (a step already there is skipped). Log in (`wandb login`) and run `push --dry-run` again for the "
          "exact plan.")


def watch(args) -> None:
    """registry.py watch: app/hooks/watcher.py on this process's backend."""
    import sys
    import time

    from app.hooks.config import check_environment, load_hooks
    from app.hooks.watcher import Watcher
    from app.tracking.settings import load_env_file
    from app.tracking import backend

    hooks = load_hooks(args.hooks)
    load_env_file()
    check_environment(hooks)
    first = not args.state.exists()
    watcher = Watcher(backend(), hooks, args.state)
    try:
        started = watcher.poll()
        if first:
            print(f"watching {', '.join(hooks.aliases)} in the registry for {len(hooks.hooks)} hook(s); where the aliases "
                  f"are now is the start (recorded in {args.state}): their next moves run hooks", file=sys.stderr)
        if args.once:
            failed = watcher.wait()
            print(f"{len(started)} hook run(s) started this poll" + (f"; gave up: {', '.join(failed)}" if failed else ""))
            if failed:
                sys.exit(1)
            return
        while True:
            time.sleep(args.every)
            watcher.poll()
    except KeyboardInterrupt:
        print("watch: stopped; runs under way are run again by the next watch", file=sys.stderr)
    finally:
        watcher.close()


if __name__ == "__main__":
    main()
