"""The explorer's state and everything it shows, as plain functions (no widgets here).

Everything the explorer (explorer.py) does is a plain function of an `ExplorerState`, so tests (and
scripts) call exactly what the sliders call:

    state = ExplorerState.from_source(G, model_cfg, expressions, source_from_cache(cache, i))
    out = render(state)              # {"source", "source_landmarks", "target_landmarks",
                                     #  "label", "generated", "parts", "panel"}
    save_image(state, "face.png")    # the generated face (and "face_panel.png", the 3-panel view)
    save_gif(state, "anim.gif", 12)  # neutral -> peak of the current choice, 12 frames (Pillow)

Target of a state (see `state_target`): without a donor, the source's own landmarks moved by
intensity x the mean displacement of the chosen expression (expressions.target_landmarks);
with a donor (another identity of the cache), the donor's neutral shape aligned to the source's
face by the kit's one similarity alignment (landmarks/align.py), moved toward the donor's own
frame of that expression by the intensity (the donor's mean displacement when the cache has no
such frame of the donor): cross-identity transfer, paper Fig. 8 ("take the donor's face shape",
transfer="shape"). With transfer="motion" ("take the donor's expression") the source keeps its own
shape and moves by the donor's change from its neutral shape to its frame of that expression
(landmarks/motion.py), mapped onto the source's size and tilt. Region sliders (mouth, smile, brow, eyes) then edit the landmarks directly, and
the label planes get the soft label (1-i) onehot(source) + i onehot(target).

`explorer.ExpressionExplorer` only wires widgets to these functions; its
sliders use continuous_update=False, so dragging does not queue generator runs. Under
papermill (interactive=False) notebook 09 uses `expression_intensity_grid` and `save_gif`.
"""
from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lmexpr_nb.common.files import atomic_path
from lmexpr_nb.common.viz import image_grid
from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.explore import expressions as ex
from lmexpr_nb.explore.infer import prepare_face
from lmexpr_nb.landmarks.align import align_shape
from lmexpr_nb.landmarks.motion import motion_transfer
from lmexpr_nb.model.generate import synthesize

REGIONS = ("mouth", "smile", "brow", "eyes")


# --------------------------------------------------------------------------------------
# Sources and donors

@dataclass
class Source:
    """A face to edit: a crop of the model's size, its 68 landmarks (crop pixels), its label."""
    image: np.ndarray
    landmarks: np.ndarray
    label: int = 0
    name: str = "source"
    subject: str | None = None
    index: int | None = None               # cache row, None for an uploaded photo
    photo: bool = False                    # an uploaded photo (not a frame of the cache)
    label_known: bool = True               # False: nobody said what expression the photo shows
    face: int = 0                          # which face of the photo (0 = the most confident) ...
    faces: int = 1                         # ... of how many dlib found in it


def source_from_cache(cache, index: int) -> Source:
    i = int(index)
    label = int(np.asarray(cache.labels)[i])
    subject = str(np.asarray(cache.subjects)[i])
    return Source(np.asarray(cache.images[i]), np.asarray(cache.landmarks[i], dtype=np.float64), label,
                  f"{subject} · {CLASSES[label]} · #{i}", subject, i)


def source_from_photo(image, image_size: int, margin: float | None = None, detector=None, face: int = 0,
                      source_landmarks=None) -> Source:
    """An uploaded photo (uint8 array, or the bytes of a PNG/JPEG): dlib finds its faces and their
    landmarks (unless `source_landmarks` are given), face number `face` (0 = the most confident)
    cropped as in preprocessing (infer.prepare_face). Raises infer.NoFaceError. Its expression is
    unknown (label_known=False): neutral is assumed until someone says."""
    found = prepare_face(image, image_size, margin=margin, detector=detector, source_landmarks=source_landmarks,
                         face=face)
    return Source(found.crop, found.landmarks, 0, "uploaded photo", None, None, photo=True, label_known=False,
                  face=found.index, faces=found.faces)


def source_choices(cache, split: str = "val") -> list[tuple[str, int]]:
    """(name, cache index) of the split's frames, neutral frames first, then by subject."""
    labels, subjects = np.asarray(cache.labels), np.asarray(cache.subjects).astype(str)
    idx = np.flatnonzero(np.asarray(cache.split).astype(str) == split) if split else np.arange(len(labels))
    idx = sorted(idx, key=lambda i: (labels[i] != 0, subjects[i], i))
    return [(f"{subjects[i]} · {CLASSES[labels[i]]} · #{i}", int(i)) for i in idx]


def pick_source(cache, split: str = "val", index: int | None = None) -> Source:
    """`index` (a cache row), else the split's first neutral frame (else its first frame)."""
    if index is not None:
        return source_from_cache(cache, index)
    choices = source_choices(cache, split)
    if not choices:
        raise ValueError(f"no {split} frames in the cache")
    return source_from_cache(cache, choices[0][1])


def donor_shapes(cache, model: ex.ExpressionModel, split: str | None = None) -> dict[str, dict[int, np.ndarray]]:
    """subject -> {class: landmarks of that subject's most expressive frame of the class}; for
    neutral (0) the frame nearest the subject's mean neutral shape. Distances are measured in
    the reference frame, so pose does not count."""
    lms = np.asarray(cache.landmarks, dtype=np.float64)
    labels, subjects = np.asarray(cache.labels).astype(int), np.asarray(cache.subjects).astype(str)
    keep = np.ones(len(labels), bool) if split is None else np.asarray(cache.split).astype(str) == split
    out: dict[str, dict[int, np.ndarray]] = {}
    for s in sorted(set(subjects[keep])):
        mine = np.flatnonzero(keep & (subjects == s))
        norm = np.stack([model.to_reference(lms[i]).apply(lms[i]) for i in mine])
        neutral = labels[mine] == 0
        base = norm[neutral].mean(0) if neutral.any() else None
        shapes = {}
        for k in sorted(set(labels[mine])):
            rows = np.flatnonzero(labels[mine] == k)
            if base is None:
                pick = rows[-1]
            else:
                dist = np.linalg.norm((norm[rows] - base).reshape(len(rows), -1), axis=1)
                pick = rows[np.argmin(dist)] if k == 0 else rows[np.argmax(dist)]
            shapes[int(k)] = lms[mine[pick]]
        out[s] = shapes
    return out


# --------------------------------------------------------------------------------------
# State and rendering: the explorer's callbacks

@dataclass
class ExplorerState:
    generator: object
    model_cfg: object                      # config.ModelConfig of the generator
    expressions: ex.ExpressionModel
    source: Source
    expression: str = "happy"
    intensity: float = 1.0
    donor: str | None = None               # a key of `donors`, or None
    donors: dict = field(default_factory=dict, repr=False)
    transfer: str = "shape"                # with a donor: "shape" (paper Fig. 8) or "motion" (landmarks/motion.py)
    mouth: float = 0.0
    smile: float = 0.0
    brow: float = 0.0
    eyes: float = 0.0
    device: object = None

    @classmethod
    def from_source(cls, generator, model_cfg, expressions, source: Source, **choices) -> "ExplorerState":
        if "expression" not in choices:
            avail = [c for c in expressions.available() if c != "neutral"]
            choices["expression"] = "happy" if "happy" in avail else (avail[0] if avail else "neutral")
        return cls(generator, model_cfg, expressions, source, **choices)

    def replace(self, **changes) -> "ExplorerState":
        return dataclasses.replace(self, **changes)

    @property
    def regions(self) -> dict[str, float]:
        return {r: float(getattr(self, r)) for r in REGIONS}


def state_target(state: ExplorerState) -> tuple[np.ndarray, np.ndarray]:
    """(target landmarks (68,2) in crop pixels, soft label (K,)) for the state's choices."""
    k = ex.as_class(state.expression)
    i = float(state.intensity)
    src = np.asarray(state.source.landmarks, dtype=np.float64)
    if state.donor not in (None, "", "none"):
        shapes = state.donors[state.donor]
        if state.transfer == "motion":
            base = src
            peak = (motion_transfer(src, shapes[k], shapes[0]) if k in shapes and 0 in shapes
                    else src + state.expressions.displacement(k, src))
        else:
            base = align_shape(shapes[0], src) if 0 in shapes else src
            peak = align_shape(shapes[k], src) if k in shapes else base + state.expressions.displacement(k, base)
        lm = base + i * (peak - base) if i else base.copy()
    else:
        lm = ex.target_landmarks(src, k, i, state.expressions, state.source.label)
    lm = ex.edit_regions(lm, **state.regions)
    n = state.model_cfg.num_classes
    return lm, ex.blend_label(state.source.label, k, i, n)


def generate_states(states: list[ExplorerState], batch_size: int = 16) -> tuple[np.ndarray, list, list]:
    """Generated faces (N,S,S,3) uint8 for states sharing one generator; plus their targets."""
    s0 = states[0]
    targets = [state_target(s) for s in states]
    imgs = synthesize(s0.generator, np.stack([s.source.image for s in states]),
                      np.stack([s.source.landmarks for s in states]), np.stack([t[0] for t in targets]),
                      np.stack([t[1] for t in targets]), s0.model_cfg, batch_size=batch_size,
                      device=_device(s0))
    return imgs, [t[0] for t in targets], [t[1] for t in targets]


def render(state: ExplorerState, scale: int | None = None) -> dict:
    """What the view shows: source (+ its landmarks), edited target landmarks, generated face,
    the soft label; `parts`, the three pictures of the view (upscaled, captions PANEL_CAPTIONS),
    and `panel`, the three side by side as one uint8 image."""
    imgs, lms, labels = generate_states([state])
    out = {"source": state.source.image, "source_landmarks": np.asarray(state.source.landmarks),
           "target_landmarks": lms[0], "label": labels[0], "generated": imgs[0]}
    out["parts"] = panel_parts(out, scale)
    out["panel"] = _join(out["parts"])
    return out


def save_image(state: ExplorerState, path, panel: bool = True, rendered: dict | None = None) -> list[Path]:
    """Write the generated face to `path` (PNG), and the 3-panel view beside it (<stem>_panel.png).
    `rendered`: render(state) when the caller has it already (the generator is not run again)."""
    out = rendered if rendered is not None else render(state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(out["generated"]).save(path)
    written = [path]
    if panel:
        p = path.with_name(f"{path.stem}_panel{path.suffix or '.png'}")
        Image.fromarray(out["panel"]).save(p)
        written.append(p)
    return written


def animation_states(state: ExplorerState, frames: int) -> list[ExplorerState]:
    """Neutral -> peak of the current choice: intensity and region sliders scaled by t in [0, 1]."""
    if frames < 2:
        raise ValueError(f"an animation needs at least 2 frames, got {frames}")
    ts = np.linspace(0.0, 1.0, frames)
    return [state.replace(intensity=float(t) * state.intensity,
                          **{r: float(t) * v for r, v in state.regions.items()}) for t in ts]


def animation_frames(state: ExplorerState, frames: int = 12, scale: int | None = None,
                     caption: str | None = None) -> list:
    """The GIF's frames as uint8 arrays: the generated face (upscaled), an intensity bar under it
    (so no two frames are identical: GIF writers merge identical frames), optional caption."""
    states = animation_states(state, frames)
    imgs, _, _ = generate_states(states)
    scale = scale or max(1, 256 // imgs.shape[1])
    out = []
    for t, img in zip(np.linspace(0, 1, frames), imgs):
        out.append(_gif_frame(img, t, scale, caption or f"{CLASSES[ex.as_class(state.expression)]}"))
    return out


def save_gif(state: ExplorerState, path, frames: int = 12, duration_ms: int = 90, scale: int | None = None,
             caption: str | None = None, hold_last: int = 0) -> Path:
    """Write the neutral-to-peak animation of the state's current choice as a looping GIF with
    exactly `frames` frames (+ `hold_last` extra copies' duration on the last frame)."""
    pics = [Image.fromarray(f) for f in animation_frames(state, frames, scale, caption)]
    durations = [duration_ms] * (len(pics) - 1) + [duration_ms * (1 + hold_last)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pics[0].save(tmp, format="GIF", save_all=True, append_images=pics[1:], duration=durations, loop=0,
                     optimize=False, disposal=1)
    return path


# --------------------------------------------------------------------------------------
# Static figure for papermill

def expression_intensity_grid(generator, model_cfg, source: Source, expressions: ex.ExpressionModel,
                              classes: list[str] | None = None, intensities=(0.0, 0.25, 0.5, 0.75, 1.0),
                              footer: str | None = None, show_landmarks: bool = True, device=None):
    """Rows: expressions (those the training set showed), columns: intensities; each cell the
    generated face for that (expression, intensity), target landmarks dotted on it."""
    classes = classes or [c for c in expressions.available() if c != "neutral"]
    base = ExplorerState(generator, model_cfg, expressions, source, device=device)
    states = [base.replace(expression=c, intensity=float(i)) for c in classes for i in intensities]
    imgs, lms, _ = generate_states(states)
    n = len(intensities)
    rows = [[source.image] + list(imgs[r * n:(r + 1) * n]) for r in range(len(classes))]
    marks = [[source.landmarks] + lms[r * n:(r + 1) * n] for r in range(len(classes))] if show_landmarks else None
    return image_grid(rows, row_titles=classes, col_titles=["source"] + [f"intensity {i:g}" for i in intensities],
                      landmarks=marks, footer=footer)


# --------------------------------------------------------------------------------------
# Pictures (PIL; fast enough to redraw on every slider change)

def draw_landmarks(image, landmarks, color=(0, 255, 102), scale: int = 1, under=None, radius: float = 1.2):
    """The image upscaled by `scale` with landmark dots (and `under` dots in grey first)."""
    im = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.BILINEAR)
    d = ImageDraw.Draw(im)
    r = radius * max(1.0, scale / 2)
    for pts, col in ((under, (150, 150, 150)), (landmarks, color)):
        if pts is None:
            continue
        for x, y in (np.asarray(pts, dtype=np.float64) + 0.5) * scale:
            d.ellipse([x - r, y - r, x + r, y + r], fill=col)
    return np.asarray(im)


PANEL_CAPTIONS = ("source and its 68 landmarks",
                  "target landmarks (green) over the dimmed source; grey: the source's own",
                  "generated face")


def panel_parts(out: dict, scale: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three pictures of the view (captions: PANEL_CAPTIONS): the source with its landmarks;
    the target landmarks (green) over the dimmed source, the source's own in grey; the generated face."""
    s = out["source"].shape[0]
    scale = scale or max(1, 256 // s)
    left = draw_landmarks(out["source"], out["source_landmarks"], scale=scale)
    dim = (np.asarray(out["source"], np.float32) * 0.35).astype(np.uint8)
    mid = draw_landmarks(dim, out["target_landmarks"], scale=scale, under=out["source_landmarks"])
    right = draw_landmarks(out["generated"], None, scale=scale)
    return left, mid, right


def panel_image(out: dict, scale: int | None = None) -> np.ndarray:
    """The three `panel_parts` side by side (4 px white gaps), as saved beside an image."""
    return _join(panel_parts(out, scale))


def _join(parts) -> np.ndarray:
    gap = np.full((parts[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([parts[0], gap, parts[1], gap, parts[2]], axis=1)


def _gif_frame(img, t: float, scale: int, caption: str) -> np.ndarray:
    s = img.shape[0] * scale
    bar = max(3, s // 40)
    text_h = 12
    canvas = Image.new("RGB", (s, s + bar + text_h), (255, 255, 255))
    canvas.paste(Image.fromarray(img).resize((s, s), Image.BILINEAR), (0, 0))
    d = ImageDraw.Draw(canvas)
    d.rectangle([0, s, s - 1, s + bar - 1], fill=(220, 220, 220))
    d.rectangle([0, s, int(round(t * (s - 1))), s + bar - 1], fill=(40, 160, 90))
    d.text((2, s + bar), f"{caption} {t:.2f}", fill=(60, 60, 60))
    return np.asarray(canvas)


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _device(state):
    if state.device is not None:
        return state.device
    p = next(iter(state.generator.parameters()), None) if hasattr(state.generator, "parameters") else None
    return p.device if p is not None else "cpu"

