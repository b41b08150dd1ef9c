"""weights.locate: where files are looked for, the hash rule, and the message naming the file."""
import pytest

from lmexpr_nb import weights


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
