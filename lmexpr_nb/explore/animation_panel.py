"""The explorer's animation panel: drive the current face by a sequence, watch it, save it.

    anim = animate_source(G, model_cfg, expressions, source, open_driver("S005/003", cache))
    anim.frames            # the driver's frame beside the generated face, one picture per frame
    save_animation(anim, "figures/animation.mp4")     # or .gif

What a person sees under the explorer (explorer.py shows it below its own box):

    driving sequence (any subject/sequence of the cache) | upload a video or frames | animate as
    Animate | play control (ipywidgets Play linked to a frame slider) | Save MP4 | Save GIF
    the frame, once animated: the driver (its landmarks dotted) beside the generated face
    status line: what drove it, how many frames, faces lost, where it was saved

The face is the explorer's current source (a cache crop or an uploaded photo's crop), animated at
the model's size by explore/animate.py's plan (motion transfer from the driver's first frame,
intensity from the motion) and generator; the command `python -m lmexpr_nb animate` does the same
on a whole photo. The expression is the driver's annotation unless one is chosen; an uploaded
video has none, so one must be chosen (the panel says so).
"""
from __future__ import annotations

import html
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.explore.animate import (
    DEFAULT_FPS,
    AnimationPlan,
    driver_expression,
    generate_animation,
    plan_animation,
    write_animation,
)
from lmexpr_nb.explore.drive import VIDEO_EXTS, Driver, DriverTrack, open_driver, track_driver
from lmexpr_nb.explore.state import draw_landmarks, png_bytes

ANNOTATION = "__driver__"          # the expression entry "the driver's own"
VIEW = 256                         # px: height of each half of a frame


@dataclass
class SourceAnimation:
    frames: list = field(repr=False)        # (VIEW, 2 VIEW (+gap), 3) uint8: driver | generated
    generated: np.ndarray = field(repr=False)   # (N, S, S, 3) uint8
    plan: AnimationPlan = field(repr=False)
    track: DriverTrack = field(repr=False)
    driver: str = ""
    fps: float = DEFAULT_FPS


def cache_sequences(cache) -> list[tuple[str, str]]:
    """(name, "SUBJECT/SEQUENCE") of every sequence of the cache: its expression, frames and split
    (none for a cache that records no sequences)."""
    if getattr(cache, "sequences", None) is None:
        return []
    subj, seqs = np.asarray(cache.subjects).astype(str), np.asarray(cache.sequences).astype(str)
    labels, split = np.asarray(cache.labels), np.asarray(cache.split).astype(str)
    out = []
    for key in sorted(set(zip(subj, seqs))):
        mine = (subj == key[0]) & (seqs == key[1])
        ks = sorted(set(labels[mine].tolist()) - {0})
        what = CLASSES[ks[-1]] if ks else "neutral"
        out.append((f"{key[0]}/{key[1]} · {what} · {int(mine.sum())} frames · {split[mine][0]}", f"{key[0]}/{key[1]}"))
    return out


def pick_driver_sequence(cache, not_subject: str | None = None, split: str = "val") -> str:
    """SUBJECT/SEQUENCE of the first `split` sequence with an expression whose subject is not
    `not_subject` (any split when the split has none)."""
    for split_ok in (True, False):
        for name, key in cache_sequences(cache):
            subject = key.split("/")[0]
            if subject != not_subject and "· neutral ·" not in name and (not split_ok or name.endswith(split)):
                return key
    raise ValueError("the cache has no sequence with an expression to drive by")


def driver_from_upload(files, folder) -> Driver:
    """A Driver from uploaded files (ipywidgets FileUpload values: dicts or objects with name and
    content): one video file, or several frames, written into `folder` in upload order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = [(str(f["name"] if isinstance(f, dict) else f.name),
              bytes(f["content"] if isinstance(f, dict) else f.content)) for f in files]
    if not items:
        raise ValueError("nothing was uploaded")
    if len(items) == 1 and Path(items[0][0]).suffix.lower() in VIDEO_EXTS:
        path = folder / Path(items[0][0]).name
        path.write_bytes(items[0][1])
        return open_driver(path)
    for i, (name, data) in enumerate(items):
        (folder / f"{i:05d}{Path(name).suffix.lower() or '.png'}").write_bytes(data)
    return open_driver(folder)


def side_by_side(driver_frame, driver_landmarks, generated) -> np.ndarray:
    """The driver's frame (its landmarks dotted) and the generated face, each VIEW px high."""
    d = np.asarray(driver_frame, np.uint8)
    scale = VIEW / d.shape[0]
    left = draw_landmarks(np.asarray(Image.fromarray(d).resize((max(1, round(d.shape[1] * scale)), VIEW),
                                                                 Image.BILINEAR)),
                          np.asarray(driver_landmarks) * scale + (scale - 1) / 2, radius=1.5)
    right = np.asarray(Image.fromarray(np.asarray(generated, np.uint8)).resize((VIEW, VIEW), Image.BILINEAR))
    return np.concatenate([left, np.full((VIEW, 4, 3), 255, np.uint8), right], axis=1)


def animate_source(generator, model_cfg, expressions, source, driver: Driver, label=None,
                   batch_size: int = 16, detector=None, device=None) -> SourceAnimation:
    """Animate an explorer Source (its crop) by `driver` (module doc)."""
    k = driver_expression(driver, label)
    track = track_driver(driver, detector)
    plan = plan_animation(source.landmarks, track.landmarks, k, 0, source.label, expressions,
                          model_cfg.num_classes, frame_labels=driver.labels if label is None else None)
    gen = np.concatenate(list(generate_animation(generator, model_cfg, source.image, source.landmarks, plan,
                                                 batch_size, device)))
    frames = [side_by_side(f, lm, g) for f, lm, g in zip(driver.frames(), track.landmarks, gen)]
    return SourceAnimation(frames, gen, plan, track, driver.describe(), driver.fps or DEFAULT_FPS)


def save_animation(anim: SourceAnimation, path) -> Path:
    """Write the panel's frames (driver | generated) as an .mp4 or .gif at the driver's frame rate
    (an MP4 says in its comment what drove it)."""
    p = anim.plan
    return write_animation(anim.frames, path, anim.fps, comment=f"lmexpr explorer: {anim.driver}; expression "
                                                               f"{CLASSES[p.expression]} (left: driver, right: generated)")


class AnimationPanel:
    """ipywidgets panel over an ExpressionExplorer (explorer.py): see the module doc."""

    def __init__(self, explorer):
        import ipywidgets as W  # lazy: only when a notebook shows it
        self.explorer = explorer
        self.anim: SourceAnimation | None = None
        self.driver: Driver | None = None
        self.saved: list[Path] = []
        self._uploads = Path(tempfile.mkdtemp(prefix="lmexpr-drive-"))
        style = {"description_width": "110px"}
        seqs = cache_sequences(explorer.cache)
        self.controls = {
            "sequence": W.Dropdown(options=seqs, value=seqs[0][1] if seqs else None, description="driving sequence",
                                   style=style, layout=W.Layout(width="420px")),
            "upload": W.FileUpload(accept="video/*,image/*", multiple=True, description="video / frames"),
            "expression": W.Dropdown(options=[("the driver's own", ANNOTATION)] + [(c, c) for c in CLASSES[1:]],
                                     value=ANNOTATION, description="animate as", style=style),
        }
        self.buttons = {"animate": W.Button(description="Animate", icon="play-circle"),
                        "save_mp4": W.Button(description="Save MP4", icon="film", disabled=True),
                        "save_gif": W.Button(description="Save GIF", icon="film", disabled=True)}
        self.play = W.Play(value=0, min=0, max=0, interval=int(1000 / DEFAULT_FPS), description="play")
        self.slider = W.IntSlider(value=0, min=0, max=0, description="frame", style=style)
        W.jslink((self.play, "value"), (self.slider, "value"))
        self.view = W.Image(format="png")      # shown once there is an animation
        self.status = W.HTML()
        self.slider.observe(lambda ch: self.show_frame(ch["new"]), names="value")
        self.controls["upload"].observe(lambda ch: self.on_upload(ch["new"]), names="value")
        self.buttons["animate"].on_click(lambda _: self.animate())
        self.buttons["save_mp4"].on_click(lambda _: self.save("mp4"))
        self.buttons["save_gif"].on_click(lambda _: self.save("gif"))
        c, b = self.controls, self.buttons
        self.widget = W.VBox([W.HTML("<b>Drive this face by a sequence</b>"),
                              W.HBox([c["sequence"], c["upload"], c["expression"]]),
                              W.HBox([b["animate"], self.play, self.slider, b["save_mp4"], b["save_gif"]]),
                              self.status])

    def on_upload(self, value):
        files = list(value.values()) if isinstance(value, dict) else list(value or ())
        if not files:
            return
        try:
            self.driver = driver_from_upload(files, Path(tempfile.mkdtemp(dir=self._uploads)))
        except (ValueError, OSError) as e:
            self.status.value = _error(f"upload: {e}")
            return
        self.status.value = html.escape(f"uploaded: {self.driver.describe()}; press Animate")

    def animate(self) -> SourceAnimation | None:
        ex = self.explorer
        st = ex.state
        label = self.controls["expression"].value
        self.status.value = html.escape("animating ...")
        try:
            if self.driver is None and not self.controls["sequence"].value:
                raise ValueError("choose a driving sequence, or upload a video or frames")
            driver = self.driver or open_driver(self.controls["sequence"].value, ex.cache)
            self.anim = animate_source(st.generator, st.model_cfg, st.expressions, st.source, driver,
                                       None if label == ANNOTATION else label, detector=ex.detector,
                                       device=st.device)
        except (ValueError, OSError) as e:
            self.status.value = _error(str(e))
            return None
        self.driver = None                     # an upload drives once; the dropdown again after it
        n = len(self.anim.frames)
        self.play.interval = int(1000 / self.anim.fps)
        self.play.max = self.slider.max = n - 1
        self.slider.value = 0
        self.show_frame(0)
        if self.view not in self.widget.children:
            self.widget.children = (*self.widget.children[:-1], self.view, self.widget.children[-1])
        for b in ("save_mp4", "save_gif"):
            self.buttons[b].disabled = False
        p = self.anim.plan
        self.status.value = html.escape(
            f"{self.anim.driver} drives {st.source.name}: {CLASSES[p.expression]}, intensity "
            f"{p.intensity.min():.2f}..{p.intensity.max():.2f} from the motion; {self.anim.track.summary()}")
        return self.anim

    def show(self):
        from IPython.display import display  # lazy: only inside a notebook
        display(self.widget)
        return self

    def show_frame(self, t: int):
        if self.anim is not None and 0 <= t < len(self.anim.frames):
            self.view.value = png_bytes(self.anim.frames[t])

    def save(self, ext: str, path=None) -> Path | None:
        if self.anim is None:
            return None
        stem = "animation_" + self.anim.driver.split(":")[0].split()[-1].replace("/", "-")
        out = self.explorer.out_dir
        path = Path(path) if path else next(out / f"{stem}_{k}.{ext}" for k in range(10_000)
                                            if not (out / f"{stem}_{k}.{ext}").exists())
        try:
            p = save_animation(self.anim, path)
        except (OSError, ValueError) as e:
            self.status.value = _error(f"could not save {path}: {e}")
            return None
        self.saved.append(p)
        self.status.value = html.escape(f"saved {p.name} ({len(self.anim.frames)} frames, driver | generated) "
                                        f"in {p.parent}")
        return p


def _error(text: str) -> str:
    return f"<span style='color:#b00'>{html.escape(text)}</span>"
