"""weights.locate: where files are looked for, the hash rule, and the message naming the file."""
import dataclasses
import hashlib
import re

import pytest

from lmexpr_nb.common import weights


@pytest.fixture
def empty_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("LMEXPR_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "w").mkdir()
    return tmp_path / "w"


def test_missing_file_message_names_file_and_folders(empty_dirs):
    with pytest.raises(weights.MissingWeightsError) as e:
        weights.locate("inception-fid", download=False)
    msg = str(e.value)
    assert "pt_inception-2015-12-05-6726825d.pth" in msg and str(empty_dirs) in msg and "\n" not in msg


def test_canonical_name_with_wrong_content_is_rejected(empty_dirs):
    (empty_dirs / "vgg19-dcbe5e31.pth").write_bytes(b"not vgg")
    with pytest.raises(weights.MissingWeightsError, match="sha256"):
        weights.locate("vgg19", download=False)


def test_user_named_file_skips_hash_except_for_fid(empty_dirs):
    mine = empty_dirs / "my_vgg19.pth"
    mine.write_bytes(b"x")
    assert weights.locate("vgg19", mine) == mine
    fid = empty_dirs / "my_inception.pth"
    fid.write_bytes(b"x")
    with pytest.raises(weights.MissingWeightsError, match="sha256"):
        weights.locate("inception-fid", fid)


def test_user_path_typo_is_reported_not_replaced(empty_dirs):
    with pytest.raises(weights.MissingWeightsError, match="does not exist"):
        weights.locate("vggface", empty_dirs / "typo.pth")


def test_file_with_the_right_digest_is_accepted(empty_dirs, monkeypatch):
    """The hash check passes a file whose sha256 starts with the spec's prefix (and names it)."""
    data = b"pretend weights"
    prefix = hashlib.sha256(data).hexdigest()[:8]
    spec = weights.WeightSpec(f"thing-{prefix}.pth", "test weights", None, prefix)
    monkeypatch.setitem(weights.SPECS, "thing", spec)
    (empty_dirs / spec.filename).write_bytes(data)
    assert weights.locate("thing", download=False) == empty_dirs / spec.filename
    assert weights.describe(empty_dirs / spec.filename) == f"{spec.filename}, sha256 {hashlib.sha256(data).hexdigest()[:16]}"
    (empty_dirs / spec.filename).write_bytes(data + b"!")                 # one byte more: refused
    with pytest.raises(weights.MissingWeightsError, match=prefix):
        weights.locate("thing", download=False)
    # the same check on a file the user names, for weights whose numbers depend on the exact file
    monkeypatch.setitem(weights.SPECS, "thing", dataclasses.replace(spec, hash_user_files=True))
    mine = empty_dirs / "mine.pth"
    mine.write_bytes(data)
    assert weights.locate("thing", mine) == mine


@pytest.mark.parametrize("name", [k for k, s in weights.SPECS.items() if s.sha256_prefix])
def test_each_stored_digest_prefix_is_the_one_in_its_release_file_name(name):
    spec = weights.SPECS[name]
    m = re.search(r"-([0-9a-f]{8,})\.pth$", spec.filename)
    assert m and m.group(1) == spec.sha256_prefix, (spec.filename, spec.sha256_prefix)
    assert spec.url.endswith("/" + spec.filename)
