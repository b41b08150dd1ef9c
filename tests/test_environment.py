"""requirements.txt (pip) and environment.yml (conda) pin the same environment."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# pip name -> conda-forge name, where they differ
CONDA_NAME = {"torch": "pytorch", "dlib-bin": "dlib"}


def pip_pins():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not pinned with =="
            pins[name.lower()] = version
    return pins


def conda_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for p in dep["pip"]:
                name, _, version = p.partition("==")
                pip[name.lower()] = version
        elif "=" in dep:
            name, _, version = dep.partition("=")
            conda[name.lower()] = version
    return conda, pip


def test_every_pip_pin_is_in_environment_yml_with_the_same_version():
    conda, pip = conda_pins()
    for name, version in pip_pins().items():
        if name in pip:
            assert pip[name] == version, name
            continue
        cname = CONDA_NAME.get(name, name)
        assert cname in conda, f"{name} missing from environment.yml"
        # dlib-bin's wheel versions carry a .postN suffix that conda-forge's dlib does not
        assert version.split(".post")[0] == conda[cname], f"{name}: pip {version} vs conda {conda[cname]}"


def test_environment_yml_pins_nothing_extra():
    conda, pip = conda_pins()
    names = {CONDA_NAME.get(n, n) for n in pip_pins()} | set(pip_pins())
    extra = set(conda) - names - {"python", "pip"}
    assert not extra, f"environment.yml pins {extra} that requirements.txt does not"
