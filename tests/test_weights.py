"""weights.locate: where files are looked for, the hash rule, and the message naming the file."""
import dataclasses
import hashlib

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
    (empty_dirs / "vgg19-dcbb9e9d.pth").write_bytes(b"not vgg")
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


# The addresses the weights' publishers give, written here from their sources (not from the kit):
# torchvision's VGG19_Weights.IMAGENET1K_V1 (also read from the installed torchvision below) and
# pytorch-fid's FID_WEIGHTS_URL (src/pytorch_fid/inception.py).
PUBLISHED = {"vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
             "inception-fid": "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                              "pt_inception-2015-12-05-6726825d.pth"}


def test_the_vgg19_address_is_the_one_the_installed_torchvision_downloads():
    from torchvision.models import VGG19_Weights
    assert VGG19_Weights.IMAGENET1K_V1.url == PUBLISHED["vgg19"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_each_hashed_weight_file_is_the_published_one_and_its_prefix_what_torch_hub_checks(name):
    """The file name and address are the publisher's, and the digest prefix the kit checks is the one
    torch.hub's own rule reads from that name (torch.hub.HASH_REGEX), so a file torchvision or
    pytorch-fid put in the hub cache is found and passes."""
    import torch.hub
    spec = weights.SPECS[name]
    assert spec.url == PUBLISHED[name] and spec.url.endswith("/" + spec.filename)
    assert spec.sha256_prefix == torch.hub.HASH_REGEX.search(PUBLISHED[name].rsplit("/", 1)[1]).group(1)
    assert {k for k, s in weights.SPECS.items() if s.sha256_prefix} == set(PUBLISHED)
