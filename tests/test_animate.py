"""Motion transfer (landmarks/motion.py), driving a photo by a sequence (explore/drive.py,
explore/animate.py, `python -m lmexpr_nb animate`), the explorer's animation panel and `bench animate`.

Faces are the synthetic default's, rendered here at a quarter of CK+'s size (exact landmarks known;
dlib finds and tracks them); the model is tests/tiny_run.py's tiny trained generator."""
import json
import subprocess
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from tiny_run import tiny_model

from lmexpr_nb.data.cache import load_cache
from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.data.synthetic.render import render_sequence, sequence_order
from lmexpr_nb.explore import animate, animation_panel, drive, expressions as ex
from lmexpr_nb.explore.infer import load_model
from lmexpr_nb.landmarks.align import Similarity, align_shape
from lmexpr_nb.landmarks.motion import motion_magnitude, motion_transfer, region_ratios, transfer_target

REPO = Path(__file__).resolve().parents[1]
SIZE = (320, 240)          # even sides: the MP4 keeps the photo's size exactly
HAPPY = CLASSES.index("happy")


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(REPO / "outputs" / "test-models")


@pytest.fixture(scope="module")
def editor(tiny):
    return load_model(tiny["checkpoint"], device="cpu", expressions=tiny["cache_dir"])


def _sequence(subject, expression="happy", frames=5, size=SIZE):
    q = sequence_order(0, subject).index(expression) + 1
    return list(render_sequence(0, subject, q, frames=frames, size=size))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """photo (subject 2, neutral), a happy driver of subject 1 as a folder of PNGs (+ its true landmarks)."""
    root = tmp_path_factory.mktemp("scene")
    photo = _sequence(2, frames=2)[0][1]
    Image.fromarray(photo).save(root / "photo.png")
    seq = _sequence(1)
    (root / "drive").mkdir()
    for f, img, _, _ in seq:
        Image.fromarray(img).save(root / "drive" / f"frame_{f:03d}.png")
    return {"root": root, "photo": photo, "frames": [s[1] for s in seq], "landmarks": np.stack([s[2] for s in seq]),
            "drive": root / "drive"}


def _folder(root: Path, name: str, frames) -> Path:
    d = root / name
    d.mkdir(exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(d / f"{i:03d}.png")
    return d


# ------------------------------------------------------------------------------ motion transfer

def test_motion_transfer_with_the_source_as_its_own_donor_returns_the_source_exactly(scene):
    src = scene["landmarks"][0].astype(np.float64)
    assert np.array_equal(motion_transfer(src, src, src), src)
    assert np.array_equal(motion_transfer(src, src, src, region_scale=True), src)
    assert np.array_equal(transfer_target("motion", src, src, src), src)
    # shape transfer stays the paper's: the donor aligned onto the source
    donor = scene["landmarks"][-1]
    np.testing.assert_array_equal(transfer_target("shape", src, donor), align_shape(donor, src))


def test_motion_transfer_moves_the_source_by_the_donors_expression_at_the_sources_size_and_tilt(scene):
    src = scene["landmarks"][0].astype(np.float64)
    d0 = np.zeros((68, 2))
    d0[48:68, 1] = 3.0                                              # the mouth drops 3 px on the source's scale
    pose = Similarity(0.5 * np.exp(0.3j), 40 + 10j)                # the donor: half the size, tilted, elsewhere
    ref = pose.apply(src)
    donor = ref + pose.apply_vectors(d0)
    np.testing.assert_allclose(motion_transfer(src, donor, ref), src + d0, atol=1e-9)
    # the donor's head moving between its frames (a similarity of the whole shape) is not motion
    moved = Similarity(1.1 * np.exp(0.05j), 7 - 3j).apply(donor)
    np.testing.assert_allclose(motion_transfer(src, moved, ref), src + d0, atol=1e-6)
    # per-region scaling: on a source whose mouth is twice as big, the mouth moves twice as far
    big = src.copy()
    c = big[48:68].mean(0)
    big[48:68] = c + 2 * (big[48:68] - c)
    assert region_ratios(big, ref)["mouth"] == pytest.approx(2.0) and region_ratios(big, ref)["eyes"] == pytest.approx(1.0)
    np.testing.assert_allclose(motion_transfer(big, donor, ref, region_scale=True) - big, d0 * 2, atol=1e-6)
    np.testing.assert_allclose(motion_transfer(big, donor, ref) - big, d0, atol=1e-6)
    assert motion_magnitude(ref, ref) == 0.0 and motion_magnitude(donor, ref) > 0


def test_bad_shapes_and_modes_are_one_line_errors(scene):
    src = scene["landmarks"][0]
    with pytest.raises(ValueError, match="68, 2"):
        motion_transfer(src[:10], src, src)
    with pytest.raises(ValueError, match="reference"):
        transfer_target("motion", src, src)
    with pytest.raises(ValueError, match="shape, motion"):
        transfer_target("both", src, src, src)


# ------------------------------------------------------------------------------ drivers and animations

def test_a_folder_driver_is_tracked_and_says_what_it_is(scene):
    d = drive.open_driver(scene["drive"])
    assert d.kind == "frames" and d.n_frames == 5 and d.size == SIZE and d.label is None
    assert d.describe().startswith(f"folder of frames {scene['drive']}: 5 frames, 320x240")
    track = drive.track_driver(d)
    assert track.landmarks.shape == (5, 68, 2) and track.lost == 0 and track.how[0] == "detected"
    iod = np.linalg.norm(scene["landmarks"][0, 36:42].mean(0) - scene["landmarks"][0, 42:48].mean(0))
    assert np.linalg.norm(track.landmarks - scene["landmarks"], axis=2).mean() < 0.1 * iod


def test_still_driver_gives_a_still_output(editor, scene, tmp_path):
    still = drive.open_driver(_folder(tmp_path, "still", [scene["frames"][2]] * 4))
    anim = animate.animate_photo(editor, scene["photo"], still, label="happy")
    assert anim.n_frames == 4 and np.all(anim.plan.intensity == 0)
    assert all(np.array_equal(f, anim.frames[0]) for f in anim.frames[1:])
    # the photo's own landmarks are every frame's target
    np.testing.assert_array_equal(anim.plan.targets, np.repeat(anim.plan.targets[:1], 4, axis=0))


def test_output_has_the_photos_size_and_the_drivers_frame_count(editor, scene):
    anim = animate.animate_photo(editor, scene["photo"], drive.open_driver(scene["drive"]), label="happy",
                                 batch_size=2)
    assert len(anim.frames) == anim.n_frames == 5 and anim.size == SIZE
    assert all(f.shape == scene["photo"].shape and f.dtype == np.uint8 for f in anim.frames)
    assert anim.plan.intensity[0] == 0 and anim.plan.intensity[-1] > 0.5       # neutral -> peak
    assert not np.array_equal(anim.frames[0], anim.frames[-1])                   # the face moved
    # far from the face the photo is untouched
    assert np.array_equal(anim.frames[-1][:, :20], scene["photo"][:, :20])


def test_a_cache_sequence_drives_with_its_own_landmarks_and_annotation(editor, tiny, scene):
    cache = load_cache(tiny["cache_dir"])
    key = animation_panel.pick_driver_sequence(cache, split="val")
    d = drive.open_driver(key, cache)
    assert d.kind == "cache" and d.label in (HAPPY, CLASSES.index("surprise")) and d.landmarks is not None
    assert "the cache's annotation" in d.describe()
    anim = animate.animate_photo(editor, scene["photo"], d)
    assert anim.n_frames == d.n_frames and anim.track.how == ["given"] * d.n_frames
    assert anim.plan.expression == d.label
    # per frame from the annotation: frames annotated neutral keep the photo's neutral label
    neutral = d.labels == 0
    assert neutral.any() and np.all(anim.plan.intensity[neutral] == 0)
    np.testing.assert_array_equal(anim.plan.labels[neutral].argmax(1), 0)
    np.testing.assert_allclose(anim.plan.labels[~neutral][:, d.label], anim.plan.intensity[~neutral], rtol=1e-6)


def test_the_command_writes_an_mp4_that_opens_with_the_right_frame_count(tiny, scene, tmp_path, capsys):
    out = tmp_path / "anim.mp4"
    rc = animate.animate_main(["--model", str(tiny["checkpoint"]), "--photo", str(scene["root"] / "photo.png"),
                               "--drive", str(scene["drive"]), "--out", str(out), "--label", "happy",
                               "--no-progress", "--batch", "2"])
    printed = capsys.readouterr().out.splitlines()
    assert rc == 0 and printed[0].startswith(f"driver: folder of frames {scene['drive']}: 5 frames")
    assert "a face in all 5 frames" in printed[1] and "wrote" in printed[-1] and "synthetic data" in printed[-1]
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 5
    video = iio.imread(out)
    assert video.shape == (5, SIZE[1], SIZE[0], 3)
    meta = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(out), "-f", "ffmetadata", "-"], check=True,
                          capture_output=True, text=True).stdout
    assert "comment=lmexpr animate: folder of frames" in meta and "synthetic data" in meta   # what made it
    # the driver as a video file (written by the same writer): a video driver, a GIF out
    clip = animate.write_animation(scene["frames"], tmp_path / "drive.mp4", fps=12)
    gif = tmp_path / "again.gif"
    assert animate.animate_main(["--model", str(tiny["checkpoint"]), "--photo", str(scene["root"] / "photo.png"),
                                 "--drive", str(clip), "--out", str(gif), "--label", "happy", "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"driver: video {clip}: 5 frames, 320x240, 12 fps" and "12 fps" in printed[-1]
    with Image.open(gif) as im:
        assert im.n_frames == 5 and im.size == SIZE


def test_lost_face_frames_are_filled_and_counted(tiny, scene, tmp_path, capsys):
    blank = np.full_like(scene["frames"][0], 128)
    frames = scene["frames"][:2] + [blank] + scene["frames"][2:4]
    out = tmp_path / "lost.gif"
    rc = animate.animate_main(["--model", str(tiny["checkpoint"]), "--photo", str(scene["root"] / "photo.png"),
                               "--drive", str(_folder(tmp_path, "lost", frames)), "--out", str(out),
                               "--label", "happy", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0 and "the face was lost in 1 of 5 frames (first: frame 2)" in text
    with Image.open(out) as im:
        assert im.n_frames == 5


def _bad_cases(scene, root: Path) -> dict:
    blank = np.full_like(scene["frames"][0], 128)
    (root / "junk.mp4").write_bytes(b"this is not a video")
    Image.fromarray(blank).save(root / "blank.png")
    small = np.asarray(Image.fromarray(scene["frames"][1]).resize((160, 120)))
    photo = str(scene["root"] / "photo.png")
    drv = str(scene["drive"])
    return {
        "no face in the driver's first frame": (photo, _folder(root, "nofirst", [blank] + scene["frames"][:2]),
                                                 "no face in its first frame"),
        "unreadable video": (photo, root / "junk.mp4", "unreadable video"),
        "a photo without a face": (str(root / "blank.png"), drv, "no face found"),
        "frames of different sizes": (photo, _folder(root, "sizes", [scene["frames"][0], small]),
                                      "frames of different sizes"),
        "a driver without an annotation and no --label": (photo, drv, "no expression annotation"),
        "no such driver": (photo, root / "missing", "no such folder or file"),
    }


def test_bad_input_is_one_line_and_exit_status_2(tiny, scene, tmp_path, capsys):
    for case, (photo, drv, says) in _bad_cases(scene, tmp_path).items():
        out = tmp_path / f"{case.replace(' ', '_')}.mp4"
        argv = ["--model", str(tiny["checkpoint"]), "--photo", photo, "--drive", str(drv), "--out", str(out),
                "--no-progress"] + ([] if "annotation" in case else ["--label", "happy"])
        rc = animate.animate_main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2, case
        assert len(err) == 1 and err[0].startswith("lmexpr animate: ") and says in err[0], (case, err)
        assert not out.exists(), case                      # nothing half-written
    rc = animate.animate_main(["--model", str(tiny["checkpoint"]), "--photo", str(scene["root"] / "photo.png"),
                               "--drive", str(scene["drive"]), "--out", str(tmp_path / "x.avi")])
    assert rc == 2 and ".mp4 or .gif" in capsys.readouterr().err


# ------------------------------------------------------------------------------ explorer, bench

def test_explorer_motion_choice_and_animation_panel(tiny, editor, tmp_path):
    from lmexpr_nb.explore.explorer import ExpressionExplorer
    cache = load_cache(tiny["cache_dir"])
    e = ExpressionExplorer(editor.generator, editor.cfg.model, cache, editor.expressions, out_dir=tmp_path)
    donor = e.controls["donor"].options[1]
    e.controls["donor"].value = donor
    shape_target = e.last["target_landmarks"]
    e.controls["transfer"].value = "motion"
    src, shapes = e.state.source.landmarks, e.donors[donor]
    k = ex.as_class(e.state.expression)
    np.testing.assert_allclose(e.last["target_landmarks"], motion_transfer(src, shapes[k], shapes[0]))
    assert not np.allclose(shape_target, e.last["target_landmarks"])
    assert "take the donor&#x27;s expression" in e.status.value       # HTML-escaped
    panel = e.animation
    assert panel.view not in panel.widget.children                 # no empty picture before an animation
    anim = panel.animate()
    assert anim is not None and panel.slider.max == len(anim.frames) - 1 and panel.view.value
    assert panel.view in panel.widget.children
    assert anim.frames[0].shape == (animation_panel.VIEW, 2 * animation_panel.VIEW + 4, 3)
    panel.slider.value = len(anim.frames) - 1
    p = panel.save("mp4")
    assert p.is_file() and imageio_ffmpeg.count_frames_and_secs(str(p))[0] == len(anim.frames)
    # an upload without an annotation asks for the expression in the status line, not a traceback
    video = animate.write_animation([f for f in anim.frames], tmp_path / "up.mp4", 5)
    panel.on_upload([{"name": "up.mp4", "content": video.read_bytes()}])
    assert panel.driver is not None and panel.driver.kind == "video"
    assert panel.animate() is None and "no expression annotation" in panel.status.value


def test_bench_animate_prints_and_writes_its_numbers(tiny, tmp_path):
    from lmexpr_nb.bench.animate import bench_animate, generator_fps
    from lmexpr_nb.config import ModelConfig
    fps = generator_fps(ModelConfig(image_size=32, ngf=4, ndf=4, n_blocks=1), batch=2, iters=1)
    assert fps["eager_frames_per_s"] > 0 and fps["bn_folded_frames_per_s"] > 0 and fps["config"]["ngf"] == 4
    lines = []
    res = bench_animate(tmp_path / "animate.json", model=str(tiny["checkpoint"]), frames=2, batch=2, sizes=(),
                        say=lambda *a, **k: lines.append(" ".join(map(str, a))))
    saved = json.loads((tmp_path / "animate.json").read_text())
    assert saved["weights_for_stability"].startswith("generator") and "load_average_at_start" in saved
    st = res["stability"]
    assert st["still/generator"]["output_change_grey"] == 0.0 and st["still/warp baseline"]["output_change_grey"] == 0.0
    assert st["sequence/generator"]["output_change_grey"] > 0 and st["driver_change_tracked_iod"] > 0
    assert st["sequence, true landmarks/warp baseline"]["output_change_grey"] > 0
    assert any("still/generator" in x for x in lines) and any("frames/s" in x for x in lines)
