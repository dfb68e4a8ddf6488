"""Stage 1, fetch: download the four MNIST files into data/raw/.

Its output is its entry in dvc.yaml. It reads the environment: MNIST_MIRROR (a local
folder or an http(s) URL prefix, which may hold user:password@), tried before the
public mirrors; MNIST_TIMEOUT (seconds a connection may stay silent, default 30);
MNIST_DEADLINE (seconds one file may take from one source, default 300).

Every file is checked against the sha256 pinned in mnist_pipeline/mnist.py, so where
the bytes came from cannot change the result; that is why MNIST_MIRROR is not a DVC
param. Whatever a source sends, fetch's memory stays bounded (a few tens of MB) and each
file's time too; every failure of a source is reported and the next one tried.
data/raw/ appears complete or not at all.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Import this project's own mnist_pipeline (the folder above this script), never an
# installed copy: an experiment in a temporary copy runs the copy's code, as DVC records.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnist_pipeline import download
from mnist_pipeline.mnist import FILES
from mnist_pipeline.paths import RAW_DIR
from mnist_pipeline.stage import StageError, log, run_stage, staged_dir


def failure_report(failures: dict[str, str]) -> str:
    lines = ["could not download MNIST; every source failed:"]
    lines += [f"  {download.describe(source)}: {reason}" for source, reason in failures.items()]
    lines.append(
        f"Set {download.MIRROR_ENV} to a folder holding the four .gz files, or to an http(s) "
        f"URL prefix serving them, e.g. {download.MIRROR_ENV}=/data/mnist dvc repro"
    )
    return "\n".join(lines)


def main() -> None:
    sources = download.sources()
    limits = download.limits()
    failures: dict[str, str] = {}  # a source that failed once is not asked again
    with staged_dir(RAW_DIR) as staging:
        for file in FILES:
            for source in (s for s in sources if s not in failures):
                try:
                    download.fetch_file(source, file, staging / file.name, limits)
                except download.FetchFailed as failure:
                    failures[source] = f"{file.download_name}: {failure}"
                    log.warning(f"{download.describe(source)} failed: {failures[source]}")
                    continue
                log.info(f"{file.name} ({file.size:,} bytes) from {download.describe(source)}")
                break
            else:
                raise StageError(failure_report(failures))


if __name__ == "__main__":
    run_stage(main)
