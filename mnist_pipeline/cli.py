"""`mnist-pipeline`, the project's commands for people (the pipeline's stages are run by
DVC, from dvc.yaml):

    mnist-pipeline predict photo.png --index 0     # digits from image files or the test set
    mnist-pipeline serve                           # TF Serving's REST API and a drawing page
    mnist-pipeline preset presets/fast.yaml        # run a preset as a DVC experiment
    mnist-pipeline report --base origin/main       # the pull request report, with pictures
    mnist-pipeline docs                            # the README's tables, from their sources

Each command is a module with add_arguments(parser) and run(args);
a user's mistake is one line on stderr and exit code 1, as in the stages.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mnist_pipeline.stage import run_stage

PROGRAM = "mnist-pipeline"
COMMANDS = {  # name: (module, summary)
    "predict": (
        "mnist_pipeline.predict",
        "predict digits from image files or test-set indices with the trained model",
    ),
    "serve": (
        "mnist_pipeline.serve",
        "serve the exported model with TF Serving's REST API, and a page to draw digits on",
    ),
    "preset": ("mnist_pipeline.presets", "run a preset (presets/*.yaml) as a DVC experiment"),
    "report": ("mnist_pipeline.report", "write the pull request report: metrics, params, pictures"),
    "docs": (
        "mnist_pipeline.tables",
        "write the README's params and stage tables from params.py, params.yaml and dvc.yaml",
    ),
}


def parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The command line; only the `chosen` command's module is imported (for its own
    arguments), so one command never waits for another's imports."""
    top = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        command = commands.add_parser(name, help=summary, description=summary)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(command)
            command.set_defaults(run=module.run)
    return top


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    args = parser(chosen).parse_args(argv)
    run_stage(lambda: args.run(args), name=f"{PROGRAM} {args.command}")


if __name__ == "__main__":
    main()
