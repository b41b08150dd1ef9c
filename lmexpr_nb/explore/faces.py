"""Several faces in one photo: find them once, name them, draw them, and pick the one to edit.

dlib finds the faces of an uploaded photo most confident first (landmarks/detect.py); the
explorer edits face 0 and, when there are several, shows the face picker: a dropdown of the
faces by number (0 = the most confident), each with where it is, its size and its dlib score,
beside a small copy of the photo with every face's box and number drawn on it. Picking another
face re-crops it from the decoded photo and its landmarks found at upload (no second detection:
on a large photo detection is the slow part).

    faces = find_faces(upload_bytes, detector)     # infer.NoFaceError when there is none
    src = faces.source(1, image_size=64)           # a state.Source of the second face
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from lmexpr_nb.explore.infer import NoFaceError, no_face_message, photo_detector
from lmexpr_nb.explore.state import Source, png_bytes, source_from_photo
from lmexpr_nb.landmarks.detect import read_image

COLOURS = ((0, 200, 90), (255, 170, 0), (0, 150, 255), (230, 60, 200))


@dataclass
class PhotoFaces:
    """A photo decoded once (upright) and every face dlib found in it, most confident first:
    (box (left, top, right, bottom), HOG score, (68, 2) landmarks in photo pixels)."""
    frame: np.ndarray
    found: list

    def __len__(self) -> int:
        return len(self.found)

    def source(self, index: int, image_size: int, margin: float | None = None) -> Source:
        """Face `index` as the explorer's source, cropped as preprocessing crops."""
        if not 0 <= index < len(self.found):
            raise ValueError(f"face {index}: the photo has faces 0..{len(self.found) - 1}")
        src = source_from_photo(self.frame, image_size, margin, source_landmarks=self.found[index][2])
        return dataclasses.replace(src, face=index, faces=len(self.found))


def find_faces(image, detector=None) -> PhotoFaces:
    """Decode `image` (read_image: bytes, a path, an array) and find all its faces with their landmarks."""
    frame = read_image(image)
    det = detector or photo_detector()
    found = [(box, score, np.asarray(det.shape(frame, box), np.float64)) for box, score in det.detections(frame)]
    if not found:
        raise NoFaceError(no_face_message(image, frame))
    return PhotoFaces(frame, found)


def face_choices(faces: PhotoFaces) -> list[tuple[str, int]]:
    """(label, index) of each face for the picker: 'face 1 · right · 87 px · score 1.46'."""
    h, w = faces.frame.shape[:2]
    out = []
    for i, (box, score, _) in enumerate(faces.found):
        cx, cy = (box[0] + box[2]) / 2 / w, (box[1] + box[3]) / 2 / h
        where = " ".join(x for x in (("top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""),
                                     ("left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre")) if x)
        best = " (most confident)" if i == 0 else ""
        out.append((f"face {i}{best} · {where} · {round(box[2] - box[0])} px · score {score:.2f}", i))
    return out


def faces_overview(faces: PhotoFaces, width: int = 256) -> np.ndarray:
    """A copy of the photo `width` px wide with each face's box and number drawn on it."""
    h, w = faces.frame.shape[:2]
    s = width / w
    im = Image.fromarray(faces.frame).resize((width, max(1, round(h * s))), Image.BILINEAR)
    d = ImageDraw.Draw(im)
    for i, (box, _, _) in enumerate(faces.found):
        col = COLOURS[i % len(COLOURS)]
        x0, y0, x1, y1 = (v * s for v in box)
        d.rectangle([x0, y0, x1, y1], outline=col, width=2)
        d.rectangle([x0, max(y0 - 12, 0), x0 + 10, max(y0 - 12, 0) + 12], fill=col)
        d.text((x0 + 2, max(y0 - 12, 0)), str(i), fill=(0, 0, 0))
    return np.asarray(im)


class FacePicker:
    """The picker's widgets: a 'face' dropdown and the overview, shown only for a photo with
    several faces; `on_pick(index)` is called when the person picks another face."""

    def __init__(self, on_pick):
        import ipywidgets as W  # lazy: only when a notebook shows it
        self.dropdown = W.Dropdown(options=[("face 0", 0)], value=0, description="face",
                                   style={"description_width": "110px"})
        self.overview = W.Image(format="png", layout=W.Layout(max_width="256px"))
        self.widget = W.HBox([self.dropdown, self.overview], layout=W.Layout(display="none"))
        self._muted = False
        self.dropdown.observe(lambda ch: None if self._muted else on_pick(int(ch["new"])), names="value")

    def show(self, faces: PhotoFaces | None, index: int = 0):
        """Offer `faces` (hidden when there are fewer than two, or None), `index` selected."""
        if faces is None or len(faces) < 2:
            self.widget.layout.display = "none"
            return
        self._muted = True
        try:
            self.dropdown.options = face_choices(faces)
            self.dropdown.value = index
        finally:
            self._muted = False
        self.overview.value = png_bytes(faces_overview(faces))
        self.widget.layout.display = ""
