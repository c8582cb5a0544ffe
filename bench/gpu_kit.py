"""Packs what issue 18's GPU check needs on a GPU machine that has no package index, for
``bench/gpu_check.sh`` to install there.

Such a machine (the workplace's ``device``) has torch, timm, Lightning and most of the science
stack, but no Hydra and no Flower, and takes at most 64 MiB of files a call. The kit, in
``bench/runs/gpu-kit`` (git-ignored), is two archives, each the wheels it names unpacked as
into one site-packages and packed with xz:

- ``project.tar.xz``: this project's pure-Python dependencies at this venv's versions (Hydra,
  OmegaConf and its ANTLR runtime, Lightning, torchmetrics, timm), so the runner there runs
  the versions it runs here.
- ``flower.tar.xz``: ``flwr[simulation]==1.42.0`` and everything it needs, at the versions the
  bench's Flower venv resolved (made first if missing), built for the target Python; less
  numpy (the machine's torch is built against its own), uv (Flower's app packaging, not its
  simulation), uvicorn's optional extras, and Ray's Java jars. Ray's wheel alone is 70 MiB
  (2.55.1, cp312), over what a call takes; xz and no jars bring the whole of Flower to about
  48 MiB.

    python bench/gpu_kit.py [--python 3.12] [--out bench/runs/gpu-kit]
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path
from tempfile import TemporaryDirectory

from flower_fedavg import flower_python

BENCH = Path(__file__).resolve().parent
PROJECT = ("hydra-core", "omegaconf", "antlr4-python3-runtime", "pytorch-lightning",
           "lightning-utilities", "torchmetrics", "timm")  # fmt: skip
LEFT_OUT = {"numpy", "uv", "uvloop", "httptools", "watchfiles", "websockets", "python-dotenv"}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")  # fmt: skip
# Run by the Flower venv's python: flwr[simulation]'s requirements, recursively, as name==version.
CLOSURE = """
import json, re
from importlib.metadata import distribution
from packaging.requirements import Requirement
found = {}
def walk(name, extras):
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in found:
        return
    dist = distribution(name)
    found[key] = dist.version
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            walk(req.name, tuple(req.extras))
walk("flwr", ("simulation",))
print(json.dumps(found))
"""


def download(requirements: list[str], python: str, into: Path) -> None:
    """Binary wheels of ``requirements`` for CPython ``python`` on x86-64 Linux, no deps."""
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
               *platforms, "-d", str(into), *requirements]  # fmt: skip
    if subprocess.run(command).returncode != 0:
        raise SystemExit(f"pip download failed for {requirements}")


def build_pure(requirements: list[str], into: Path) -> None:
    """Wheels of pure-Python ``requirements``, no deps; built here where only a source
    distribution exists (the ANTLR runtime OmegaConf pins)."""
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(into),
               *requirements]  # fmt: skip
    if subprocess.run(command).returncode != 0:
        raise SystemExit(f"pip wheel failed for {requirements}")


def pack(wheels: Path, archive: Path) -> None:
    """The wheels in ``wheels`` unpacked as into one site-packages (what installing a wheel
    puts there, less Ray's Java jars), as one xz-compressed tar: xz packs the compiled
    libraries about a third smaller than the wheels' zip."""
    with TemporaryDirectory() as site:
        for wheel in sorted(wheels.glob("*.whl")):
            with zipfile.ZipFile(wheel) as zipped:
                zipped.extractall(site)
                for member in zipped.infolist():  # extractall drops the modes: Ray runs its
                    mode = member.external_attr >> 16  # servers as executables
                    if mode & 0o111:
                        (Path(site) / member.filename).chmod(mode & 0o777)
        shutil.rmtree(Path(site) / "ray" / "jars", ignore_errors=True)
        with lzma.open(archive, "wb", preset=6) as xz, tarfile.open(fileobj=xz, mode="w") as tar:
            for path in sorted(Path(site).iterdir()):
                tar.add(path, arcname=path.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python version")
    parser.add_argument("--out", type=Path, default=BENCH / "runs" / "gpu-kit")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    flower = flower_python(BENCH / "runs" / "flower-venv")
    found = subprocess.run([str(flower), "-c", CLOSURE], capture_output=True, text=True)
    if found.returncode != 0:
        raise SystemExit(f"flwr's requirements could not be read: {found.stderr.strip()[-300:]}")
    closure = json.loads(found.stdout)
    with TemporaryDirectory() as project, TemporaryDirectory() as flower_wheels:
        build_pure([f"{name}=={metadata.version(name)}" for name in PROJECT], Path(project))
        pack(Path(project), args.out / "project.tar.xz")
        wanted = [f"{name}=={v}" for name, v in closure.items() if name not in LEFT_OUT]
        download(wanted, args.python, Path(flower_wheels))
        pack(Path(flower_wheels), args.out / "flower.tar.xz")
    total = 0
    for archive in sorted(args.out.iterdir()):
        total += archive.stat().st_size
        print(f"{archive.name}: {archive.stat().st_size / 2**20:.1f} MiB")
    print(f"the kit: {total / 2**20:.1f} MiB in {args.out}")


if __name__ == "__main__":
    main()
