"""`make lab` (lmexpr_nb.runner.lab): --allow-root only as root; notebooks reach the browser with the
metadata their kernel will report, so they do not open "modified" (test_browser checks that
in JupyterLab itself); the file on disk is never touched."""
import asyncio
import sys

import nbformat
import pytest

from lmexpr_nb.runner import lab


def test_allow_root_only_as_root_and_it_says_so(monkeypatch):
    said = []
    monkeypatch.setattr(lab.os, "geteuid", lambda: 0)
    cmd = lab.lab_command("notebooks", log=said.append)
    assert "--allow-root" in cmd and cmd[-1] == "notebooks" and cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.contents_manager_class={lab.CONTENTS_MANAGER}" in cmd
    assert len(said) == 1 and "root" in said[0] and "--allow-root" in said[0]
    said.clear()
    monkeypatch.setattr(lab.os, "geteuid", lambda: 1000)
    assert "--allow-root" not in lab.lab_command("notebooks", log=said.append) and not said


def test_lab_main_refuses_a_missing_folder(tmp_path, capsys):
    assert lab.lab_main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and len(err.strip().splitlines()) == 1


def test_kernel_metadata_is_what_ipykernel_here_reports():
    from ipykernel.ipkernel import IPythonKernel
    here = lab.kernel_metadata("python3", "Python 3 (lmexpr-nb)", [sys.executable, "-m", "ipykernel_launcher", "-f",
                                                                    "{connection_file}"])
    assert here["kernelspec"] == {"name": "python3", "display_name": "Python 3 (lmexpr-nb)", "language": "python"}
    assert here["language_info"] == IPythonKernel.language_info
    assert here["language_info"]["version"] == sys.version.split()[0]
    other = lab.kernel_metadata("py39", "Python 3.9", ["/opt/other/python3.9", "-m", "ipykernel_launcher"])
    assert "language_info" not in other                 # another interpreter: its version is not ours to say


def test_align_metadata_touches_only_notebooks_of_that_kernel():
    meta = lab.kernel_metadata("python3", "Python 3 (lmexpr-nb)", [sys.executable, "-m", "ipykernel_launcher"])
    nb = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}
    assert lab.align_metadata(nb, meta) and nb["kernelspec"]["display_name"] == "Python 3 (lmexpr-nb)"
    assert nb["language_info"] == meta["language_info"]
    assert not lab.align_metadata(nb, meta)             # already aligned
    r = {"kernelspec": {"name": "ir", "display_name": "R"}}
    assert not lab.align_metadata(r, meta) and r == {"kernelspec": {"name": "ir", "display_name": "R"}}


def test_contents_manager_serves_aligned_metadata_and_leaves_the_file(tmp_path):
    from lmexpr_nb.runner.context import NOTEBOOK_DIR
    src = NOTEBOOK_DIR / "09_explorer.ipynb"
    (tmp_path / "nb.ipynb").write_bytes(src.read_bytes())
    cm = lab.KitContentsManager(root_dir=str(tmp_path))
    meta = lab.kernel_metadata("python3", "Python 3 (lmexpr-nb)", [sys.executable, "-m", "ipykernel_launcher"])
    cm._kernel_meta = {"python3": meta}
    model = asyncio.run(cm.get("nb.ipynb", content=True, type="notebook"))
    assert model["content"]["metadata"]["kernelspec"] == meta["kernelspec"]
    assert model["content"]["metadata"]["language_info"] == meta["language_info"]
    assert len(model["content"]["cells"]) == len(nbformat.read(str(src), as_version=4).cells)
    assert (tmp_path / "nb.ipynb").read_bytes() == src.read_bytes()
    listing = asyncio.run(cm.get("", content=True))
    assert [c["name"] for c in listing["content"]] == ["nb.ipynb"]


@pytest.mark.parametrize("name", [None, "nope"])
def test_contents_manager_leaves_unknown_kernels_alone(name):
    cm = lab.KitContentsManager()
    assert cm._meta_for(name) is None
