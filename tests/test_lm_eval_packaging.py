"""The lm-eval .pth file ships at the root of both regular and editable wheels.

Builds run on a copy of the sources (the shared working tree is never built in place)
with the already-installed setuptools (no network, no build isolation).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from prm_plugin.integrations._lm_eval_hook import PTH_FILENAME

REPO = Path(__file__).resolve().parents[1]
PTH_SOURCE = REPO / "prm_plugin" / "integrations" / PTH_FILENAME


def _root_files(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as z:
        return {n: z.read(n) for n in z.namelist() if "/" not in n}


def test_regular_wheel_has_the_pth_at_its_root(source_copy, tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
         str(source_copy)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("prm_plugin-*.whl")
    root = _root_files(wheel)
    assert root.get(PTH_FILENAME) == PTH_SOURCE.read_bytes()
    with zipfile.ZipFile(wheel) as z:
        record = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))).decode()
        entry_points = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert f"\n{PTH_FILENAME}," in "\n" + record  # recorded, so `pip uninstall` removes it
    assert "[lm_eval.models]\nprm_guided = prm_plugin.integrations.lm_eval:PRMGuidedLM" in entry_points
    # the shipped world travels as package data: every file of its folder is in the wheel
    assets = REPO / "prm_plugin" / "world" / "assets"
    shipped = {f"prm_plugin/world/assets/{p.relative_to(assets).as_posix()}" for p in assets.rglob("*") if p.is_file()}
    with zipfile.ZipFile(wheel) as z:
        assert shipped and shipped <= set(z.namelist()), sorted(shipped - set(z.namelist()))


def test_editable_wheel_has_the_pth_at_its_root(source_copy, tmp_path):
    code = "import sys, setuptools.build_meta as b; print(b.build_editable(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=source_copy, check=True,
                   capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("prm_plugin-*.editable-*.whl")
    root = _root_files(wheel)
    assert root.get(PTH_FILENAME) == PTH_SOURCE.read_bytes()
    editable_pth = next(n for n in root if n.startswith("__editable__") and n.endswith(".pth"))
    # site processes .pth files in sorted order: ours must come after the editable
    # finder's, whose meta-path finder is what locates prm_plugin in editable installs.
    assert sorted([editable_pth, PTH_FILENAME]) == [editable_pth, PTH_FILENAME]
