"""One import namespace: the wheel and the editable install put nothing but ``prm_plugin*``
at the top of site-packages, and every module of the repository's top-level folders
lands under ``prm_plugin`` (``strategies/bon.py`` is ``prm_plugin.strategies.bon``).

Each install goes into a fresh virtual environment (no pip, no network); the test's own
environment is added to its path as a plain directory, so the dependencies import but
the test's own editable install of prm-plugin does not leak in.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: repository folder -> import package it installs as (pyproject's package-dir)
LAYOUT = {"prm_plugin": "prm_plugin", "strategies": "prm_plugin/strategies",
          "trainers": "prm_plugin/trainers", "task_configs": "prm_plugin/task_configs"}
CHECK = """
import importlib.util, json, sys
import prm_plugin, prm_plugin.strategies.bon, prm_plugin.trainers.aslaf, prm_plugin.task_configs as tasks
from prm_plugin.calibration import load_table
from pathlib import Path
assert all(importlib.util.find_spec(name) is None for name in ("strategies", "trainers", "task_configs"))
print(json.dumps({"strategy": prm_plugin.get_strategy("beam").__module__,
                  "yaml": sorted(p.name for p in Path(tasks.path()).rglob("*.yaml")),
                  "auto_table_entries": len(load_table().entries)}))
"""


def _fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # a bare path line: the deps import, but the .pth files there (our editable finder) are not run
    (Path(site) / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def _pip_install(python: Path, *args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                          "--no-build-isolation", "--no-index", *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr


def _record_top_level(python: Path) -> set[str]:
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (record,) = site.glob("prm_plugin-*.dist-info/RECORD")
    rows = [row[0] for row in csv.reader(io.StringIO(record.read_text())) if row]
    top = set()
    for path in rows:
        if path.startswith("../"):  # console scripts, in bin/
            continue
        parts = path.split("/")
        # a top-level module's bytecode names the module: __pycache__/<module>.cpython-311.pyc
        top.add(parts[1].split(".")[0] if parts[0] == "__pycache__" else parts[0])
    return top


def _check_imports(python: Path, cwd: Path) -> dict[str, object]:
    import json

    out = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _is_ours(name: str, editable: bool) -> bool:
    if name == "prm_plugin" or (name.startswith("prm_plugin") and name.endswith((".pth", ".dist-info"))):
        return True
    # setuptools' editable machinery, named after the distribution
    return editable and name.startswith(("__editable__.prm_plugin-", "__editable___prm_plugin_"))


@pytest.mark.slow
def test_wheel_installs_one_namespace(source_copy: Path, tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(source_copy)], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("prm_plugin-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    for folder, package in LAYOUT.items():  # every module of every folder, at its place in the namespace
        for path in (REPO / folder).rglob("*.py"):
            if "__pycache__" not in path.parts:
                assert f"{package}/{path.relative_to(REPO / folder).as_posix()}" in names, path
    python = _fresh_venv(tmp_path / "venv")
    _pip_install(python, str(wheel))
    top = _record_top_level(python)
    assert top and all(_is_ours(name, editable=False) for name in top), sorted(top)
    got = _check_imports(python, tmp_path)
    assert got["strategy"] == "prm_plugin.strategies.beam"
    assert "arith_prm.yaml" in got["yaml"] and "math500_prm.yaml" in got["yaml"]  # type: ignore[operator]
    assert "prm_plugin/tables/auto_world.json" in names and got["auto_table_entries"]  # auto's shipped table


@pytest.mark.slow
def test_editable_install_is_one_namespace_too(source_copy: Path, tmp_path: Path) -> None:
    python = _fresh_venv(tmp_path / "venv")
    _pip_install(python, "-e", str(source_copy))
    top = _record_top_level(python)
    assert top and all(_is_ours(name, editable=True) for name in top), sorted(top)
    # a folder named like one of ours in the working directory shadows nothing
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "__init__.py").write_text("raise ImportError('the wrong strategies')\n")
    got = _check_imports(python, tmp_path / "venv")
    assert got["strategy"] == "prm_plugin.strategies.beam"
    out = subprocess.run([str(python), "-c", "import prm_plugin.strategies.bon as m; print(m.__file__)"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == str(source_copy / "strategies" / "bon.py"), out.stderr
