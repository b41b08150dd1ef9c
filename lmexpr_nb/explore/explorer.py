"""The expression explorer widget (ipywidgets): wiring only, over the functions of state.py.

What a person sees, top to bottom:

    subject | frame | your photo (upload) | source is
    face picker, only for a photo with several faces: face 0, 1, ... (by confidence) + the photo
    expression, intensity, landmark donor, donor gives   |  mouth, smile, brow, eyes
    three captioned pictures: source + its landmarks | target landmarks | generated face
    a note, only when it matters (a real photo given to a model trained only on synthetic
      faces; an untrained model; a photo whose expression nobody has set yet)
    Save image | GIF frames | Save GIF | busy indicator ("generating..." / "ready, 0.18 s")
    status line: source, source expression -> target at intensity; donor and regions when set
    the animation panel (animation_panel.py): drive the face by a cache sequence or an uploaded video

Every callback updates `self.state` (a state.ExplorerState) and calls `refresh()`, which
calls state.render; `last` holds the latest render, `seconds` how long it took. Works
headless: constructing it needs no browser.

Choices where the issue was silent:
- Sources are picked as subject, then frame (the split's subjects; neutral frames first).
  An uploaded photo becomes the subject entry "your photo" (pick it again to return to it).
- A photo's expression is unknown: "source is" is left empty and the note asks for it;
  until then neutral is assumed (said in the status line). The kit does not guess it.
- A photo with several faces: face 0, the one dlib is most confident of, is edited first; the
  picker (faces.py) offers the others. Another face's expression is unknown again.
- Saved files are named from the whole state: source (subject-row or photo-<name>, at most 40
  characters of the upload's name, a hash of the whole name added when cut; -face<i> if several),
  expression-intensity, donor-<subject> (donor-<subject>-motion when it gives only its
  expression), each moved region with its signed amount, then a counter, e.g.
  explorer_S004-12_happy-1.00_donor-S001_mouth+0.50_0.png.
- A landmark donor gives its face shape by default (the paper's Fig. 8); "donor gives" switches
  to its expression alone (motion transfer, landmarks/motion.py).
- `trained_on` is the checkpoint's provenance (model/trained.py's TrainedModel.provenance);
  {"untrained": True} for a random generator; None (unknown) shows no note.
"""
from __future__ import annotations

import dataclasses
import hashlib
import html
import re
import time
from pathlib import Path

import numpy as np

from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.explore.animation_panel import AnimationPanel
from lmexpr_nb.explore.faces import FacePicker, find_faces
from lmexpr_nb.explore.state import (
    PANEL_CAPTIONS,
    REGIONS,
    ExplorerState,
    Source,
    donor_shapes,
    png_bytes,
    render,
    save_gif,
    save_image,
    source_from_cache,
)
from lmexpr_nb.landmarks.motion import TRANSFERS

PHOTO = "__photo__"        # the subject entry of an uploaded photo
LABEL_WIDTH = "110px"      # room for "landmark donor"
TRAIN_ON_REAL = ("train on CK+ with the paper profile (<code>lmexpr run --profile paper --data /path/to/CK+</code>, "
                 "a GPU), or load such a checkpoint (<code>checkpoint = ...</code> in this notebook's parameters cell)")


# --------------------------------------------------------------------------------------
# Plain functions of the state (tests call them directly)

def subject_choices(cache, split: str | None = "val") -> list[str]:
    """The split's subjects, sorted (all subjects when split is None)."""
    subjects = np.asarray(cache.subjects).astype(str)
    keep = np.ones(len(subjects), bool) if split is None else np.asarray(cache.split).astype(str) == split
    return sorted(set(subjects[keep]))


def frame_choices(cache, subject: str, split: str | None = "val") -> list[tuple[str, int]]:
    """(name, cache row) of one subject's frames in the split: neutral first, then by row."""
    subjects, labels = np.asarray(cache.subjects).astype(str), np.asarray(cache.labels)
    keep = subjects == subject
    if split is not None:
        keep &= np.asarray(cache.split).astype(str) == split
    frames = np.asarray(getattr(cache, "frames", np.zeros(len(labels), int)))
    rows = sorted(np.flatnonzero(keep), key=lambda i: (labels[i] != 0, i))
    return [(f"{CLASSES[labels[i]]} · frame {frames[i]} · #{i}", int(i)) for i in rows]


def status_text(state: ExplorerState) -> str:
    s, src = state, state.source
    who = source_title(src) + ("" if src.label_known else " (expression not set: neutral assumed)")
    parts = [f"{who}: {CLASSES[src.label]} → {s.expression} at {s.intensity:.2f}"]
    if s.donor:
        parts.append(f"landmark donor {s.donor}" + (f" ({TRANSFERS[s.transfer]})" if s.transfer != "shape" else ""))
    moved = [f"{k} {v:+.2f}" for k, v in s.regions.items() if v]
    if moved:
        parts.append("regions " + ", ".join(moved))
    return "; ".join(parts)


def source_title(src: Source) -> str:
    if not src.photo:
        return src.name
    return f"your photo {src.name}" + (f" (face {src.face} of {src.faces})" if src.faces > 1 else "")


def save_stem(state: ExplorerState) -> str:
    """A file stem that says what the saved face is (see the module doc)."""
    s, src = state, state.source
    if src.photo:
        who = "photo-" + short_name(Path(src.name).stem) + (f"-face{src.face}" if src.faces > 1 else "")
    else:
        who = f"{src.subject or 'source'}" + (f"-{src.index}" if src.index is not None else "")
    parts = ["explorer", who, f"{s.expression}-{s.intensity:.2f}"]
    if s.donor:
        parts.append(f"donor-{s.donor}" + ("-motion" if s.transfer == "motion" else ""))
    parts += [f"{k}{v:+.2f}" for k, v in s.regions.items() if v]
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", "_".join(parts))


def short_name(name: str, keep: int = 40) -> str:
    """`name` made safe for a file name and at most `keep` characters (+ a hash of the whole name
    when cut): an upload's name can be 300 characters, and a file name at most 255 bytes."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-.") or "photo"
    if len(safe) <= keep:
        return safe
    return f"{safe[:keep]}-{hashlib.sha1(name.encode('utf-8', 'replace')).hexdigest()[:8]}"


def source_note(source: Source, trained_on: dict | None) -> str:
    """The note beside the result (HTML, "" when there is nothing to say)."""
    notes = []
    if trained_on and trained_on.get("untrained"):
        notes.append("<b>This generator is untrained</b> (random weights): its faces mean nothing. "
                     "Run 03_training, or give a checkpoint in the parameters cell.")
    elif source.photo and trained_on and trained_on.get("synthetic"):
        notes.append("<b>This model has never seen a real face.</b> It was trained only on the kit's synthetic "
                     "drawings, so what it makes of your photo says nothing about the paper's method. "
                     f"For a model that has: {TRAIN_ON_REAL}.")
    if source.photo and not source.label_known:
        notes.append("What expression does your photo show? Set <b>source is</b> (neutral is assumed until you do).")
    if not notes:
        return ""
    return ("<div style='border-left:4px solid #d08700;background:#fff8e1;padding:4px 8px;margin:4px 0;"
            "max-width:780px;line-height:1.45'>" + "<br>".join(notes) + "</div>")


# --------------------------------------------------------------------------------------
# The widget

class ExpressionExplorer:
    """ipywidgets explorer over a cache's faces and uploaded photos (see the module doc)."""

    def __init__(self, generator, model_cfg, cache, expressions, split: str = "val", out_dir: str | Path = ".",
                 data_cfg=None, device=None, detector=None, source_index=None, trained_on: dict | None = None):
        import ipywidgets as W  # lazy: only when a notebook shows it
        self.cache, self.out_dir, self.data_cfg, self.detector = cache, Path(out_dir), data_cfg, detector
        self.trained_on = trained_on
        self.split = split if subject_choices(cache, split) else None
        self.subjects = subject_choices(cache, self.split)
        self.donors = donor_shapes(cache, expressions)
        first = frame_choices(cache, self.subjects[0], self.split)[0][1]
        src = source_from_cache(cache, first if source_index is None else source_index)
        if src.index not in [i for _, i in frame_choices(cache, src.subject, self.split)]:
            self.split, self.subjects = None, subject_choices(cache, None)     # a frame of another split
        self.state = ExplorerState.from_source(generator, model_cfg, expressions, src, donors=self.donors,
                                                  device=device)
        self.photo: Source | None = None
        self.photo_faces = None                     # faces.PhotoFaces of the uploaded photo
        self.picker = FacePicker(self.on_face)
        self.last: dict | None = None
        self.seconds: float | None = None
        self.saved: list[Path] = []
        self._muted = False
        style = {"description_width": LABEL_WIDTH}
        slider = dict(continuous_update=False, readout_format=".2f", style=style)
        self.controls = {
            "subject": W.Dropdown(options=self._subject_options(), value=src.subject, description="subject",
                                  style=style),
            "source": W.Dropdown(options=frame_choices(cache, src.subject, self.split), value=src.index,
                                 description="frame", style=style),
            "upload": W.FileUpload(accept="image/*", multiple=False, description="your photo"),
            "source_label": W.Dropdown(options=[(c, k) for k, c in enumerate(CLASSES)], value=src.label,
                                       description="source is", style=style),
            "expression": W.Dropdown(options=list(expressions.available()), value=self.state.expression,
                                     description="expression", style=style),
            "intensity": W.FloatSlider(value=self.state.intensity, min=0.0, max=1.0, step=0.05,
                                       description="intensity", **slider),
            "donor": W.Dropdown(options=self._donor_options(src), value="none", description="landmark donor",
                                style=style),
            "transfer": W.Dropdown(options=[("its face shape (Fig. 8)", "shape"), ("its expression only", "motion")],
                                   value="shape", description="donor gives", style=style),
            **{r: W.FloatSlider(value=0.0, min=-1.0, max=1.0, step=0.05, description=r, **slider)
               for r in REGIONS},
            "frames": W.IntSlider(value=12, min=2, max=48, description="GIF frames", continuous_update=False,
                                  style=style),
        }
        self.buttons = {"save_image": W.Button(description="Save image", icon="save"),
                        "save_gif": W.Button(description="Save GIF", icon="film")}
        self.views = [W.Image(format="png") for _ in PANEL_CAPTIONS]
        for view in self.views:
            view.add_class("lmexpr-view")     # source | target | generated, for a page to find
        self.view = self.views[2]                  # the generated face
        self.captions = [W.HTML(layout=W.Layout(width="256px")) for _ in PANEL_CAPTIONS]
        self.note, self.busy, self.status = W.HTML(), W.HTML(), W.HTML()
        for name, w in self.controls.items():
            if name != "upload":
                w.observe(lambda ch, name=name: self.on_change(name, ch["new"]), names="value")
        self.controls["upload"].observe(lambda ch: self.on_upload(ch["new"]), names="value")
        self.buttons["save_image"].on_click(lambda _: self.save_image())
        self.buttons["save_gif"].on_click(lambda _: self.save_gif())
        c = self.controls
        pictures = W.HBox([W.VBox([v, cap]) for v, cap in zip(self.views, self.captions)])
        self.widget = W.VBox([
            W.HBox([c["subject"], c["source"], c["upload"], c["source_label"]]), self.picker.widget,
            W.HBox([W.VBox([c["expression"], c["intensity"], c["donor"], c["transfer"]]),
                    W.VBox([c[r] for r in REGIONS])]),
            pictures, self.note,
            W.HBox([self.buttons["save_image"], c["frames"], self.buttons["save_gif"], self.busy]),
            self.status])
        self.animation = AnimationPanel(self)          # shown below the explorer's box
        self.refresh()

    # callbacks --------------------------------------------------------------------------
    def on_change(self, name: str, value):
        if self._muted or name == "frames":
            return
        if name == "subject":
            src = self.photo if value == PHOTO else source_from_cache(
                self.cache, frame_choices(self.cache, value, self.split)[0][1])
            self._set_source(src)
        elif name == "source":
            if value is None or value < 0:
                return
            self._set_source(source_from_cache(self.cache, value))
        elif name == "source_label":
            if value is None:
                return
            self.state = self.state.replace(source=dataclasses.replace(self.state.source, label=int(value),
                                                                       label_known=True))
            if self.state.source.photo:
                self.photo = self.state.source
        elif name == "donor":
            self.state = self.state.replace(donor=None if value == "none" else value)
        else:
            self.state = self.state.replace(**{name: float(value) if name in REGIONS + ("intensity",) else value})
        self.refresh()

    def on_upload(self, value):
        files = list(value.values()) if isinstance(value, dict) else list(value or ())
        if not files:
            return
        name = files[0].get("name", "photo")
        self.busy.value = _busy(f"finding the face in {html.escape(name)}...")
        try:
            faces = find_faces(bytes(files[0]["content"]), self.detector)
            src = faces.source(0, self.state.model_cfg.image_size, self._margin())
        except (ValueError, OSError) as e:  # no face (infer.NoFaceError), an unreadable or too large image
            self.status.value = _error(f"{name}: {e}")
            return
        finally:
            self.busy.value = ""
        self.photo_faces, self.photo = faces, dataclasses.replace(src, name=name)
        self._set_source(self.photo)
        self.refresh()

    def on_face(self, index: int):
        """Another face of the uploaded photo (the face picker); its expression is asked again."""
        if self.photo_faces is None or self.photo is None or index == self.photo.face:
            return
        src = self.photo_faces.source(index, self.state.model_cfg.image_size, self._margin())
        self.photo = dataclasses.replace(src, name=self.photo.name)
        self._set_source(self.photo)
        self.refresh()

    def refresh(self) -> dict | None:
        self.busy.value = _busy("generating...")
        t0 = time.perf_counter()
        try:
            self.last = render(self.state)
        except ValueError as e:          # e.g. an expression the training split never showed
            self.busy.value = ""
            self.status.value = _error(str(e))
            return None
        for view, part in zip(self.views, self.last["parts"]):
            view.value = png_bytes(part)
        self.seconds = time.perf_counter() - t0
        src = self.state.source
        texts = (f"source: {source_title(src)}", PANEL_CAPTIONS[1], PANEL_CAPTIONS[2])
        for cap, text in zip(self.captions, texts):
            cap.value = (f"<div style='font-size:12px;color:#444;text-align:center;line-height:1.3'>"
                         f"{html.escape(text)}</div>")
        self.note.value = source_note(src, self.trained_on)
        self.status.value = html.escape(status_text(self.state))
        self.busy.value = f"<span style='color:#2e7d32'>ready, {self.seconds:.2f} s</span>"
        return self.last

    def save_image(self, path=None) -> list[Path]:
        try:
            path = Path(path) if path else self._next_path("png")
            self.status.value = html.escape(f"saving {path.name} ...")
            written = save_image(self.state, path, rendered=self.last)
        except OSError as e:
            self.status.value = _error(f"could not save {path or 'the image'} in {self.out_dir}: {e}")
            return []
        self.saved += written
        self.status.value = html.escape(f"saved {written[0].name} (and {written[-1].name}) in {path.parent}")
        return written

    def save_gif(self, path=None, frames: int | None = None) -> Path | None:
        try:
            path = Path(path) if path else self._next_path("gif")
        except OSError as e:
            self.status.value = _error(f"could not save a GIF in {self.out_dir}: {e}")
            return None
        n = frames or self.controls["frames"].value
        for b in self.buttons.values():
            b.disabled = True
        self.busy.value = _busy(f"saving a {n}-frame GIF...")
        self.status.value = html.escape(f"saving {path.name} ({n} frames) ...")
        t0 = time.perf_counter()
        try:
            p = save_gif(self.state, path, n)
        except (OSError, ValueError) as e:   # a full disk; a generator that makes NaN (model/generate.py)
            self.status.value = _error(f"could not save {path}: {e}")
            return None
        finally:
            for b in self.buttons.values():
                b.disabled = False
            self.busy.value = ""
        self.saved.append(p)
        self.status.value = html.escape(f"saved {p.name} ({n} frames, {time.perf_counter() - t0:.1f} s) in {p.parent}")
        return p

    # helpers ----------------------------------------------------------------------------
    def _subject_options(self) -> list:
        return ([("your photo", PHOTO)] if self.photo is not None else []) + [(s, s) for s in self.subjects]

    def _donor_options(self, src: Source) -> list[str]:
        return ["none"] + [s for s in self.donors if s != src.subject]

    def _set_source(self, src: Source):
        """Make `src` the source and point every source control at it, without renders."""
        self.state = self.state.replace(source=src, donor=None if self.state.donor == src.subject
                                        else self.state.donor)
        c = self.controls
        self._muted = True
        try:
            c["subject"].options = self._subject_options()
            c["subject"].value = PHOTO if src.photo else src.subject
            if src.photo:
                c["source"].options = [(src.name, -1)]
                c["source"].value, c["source"].disabled = -1, True
            else:
                c["source"].options = frame_choices(self.cache, src.subject, self.split)
                c["source"].value, c["source"].disabled = src.index, False
            c["source_label"].value = src.label if src.label_known else None
            c["donor"].options = self._donor_options(src)
            c["donor"].value = self.state.donor or "none"
            c["upload"].value = ()               # the same file can be uploaded again
            self.picker.show(self.photo_faces if src.photo else None, src.face)
        finally:
            self._muted = False

    def _margin(self) -> float | None:
        return self.data_cfg.crop_margin if self.data_cfg is not None else None

    def _next_path(self, ext: str) -> Path:
        stem, k = save_stem(self.state), 0
        while (self.out_dir / f"{stem}_{k}.{ext}").exists():
            k += 1
        return self.out_dir / f"{stem}_{k}.{ext}"

    def show(self):
        from IPython.display import display  # lazy: only inside a notebook
        display(self.widget)
        self.animation.show()
        return self

    def _ipython_display_(self):
        self.show()


def _busy(text: str) -> str:
    return f"<span style='color:#b26a00'><i class='fa fa-spinner fa-spin'></i> {text}</span>"   # FA 4 ships with ipywidgets


def _error(text: str) -> str:
    return f"<span style='color:#b00'>{html.escape(text)}</span>"
