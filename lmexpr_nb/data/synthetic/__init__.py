"""The embedded default dataset: procedural faces written in the real CK+ layout.

Why it exists: so that the whole kit (CK+ reader, dlib preprocessing, training,
every notebook) runs anywhere in minutes without a licensed dataset. It is not a
substitute for real faces; the tree carries a `SYNTHETIC.md` marker and every
output made from it is labelled synthetic.

How a frame is made:
1. an identity (`identity.random_identity`) = a neutral 68-point shape in face units
   (`identity.neutral_shape`) plus appearance (skin, hair, eyes, brows, glasses, beard);
2. an expression moves the landmarks (`expression.expression_displacements`), scaled
   by an eased intensity from 0 (first frame) to 1 (last frame);
3. a small head pose (roll, yaw, pitch, translation, scale) maps face units to
   pixels (`canvas.pose_points`);
4. the face is rendered FROM those final landmarks (`render.render_frame`): the jaw is
   the face contour, 36-47 are the eye openings, 48-67 the lips, 17-26 the top
   edge of the brows, 27-35 the nose, so the landmark file is exact.

Face units: those of `shape.MEAN_SHAPE`, a 68-point mean shape in the iBUG point scheme
that we construct from a few face proportions (`shape.FaceProportions`,
`shape.mean_shape`), centred on its box, 0.9 units wide (jaw 0 to jaw 16); x to the
right, y down, like image coordinates. Landmark files use 0-based pixel coordinates
with pixel centres on integers (dlib's convention).

The layout is CK+'s: `cohn-kanade-images/S001/003/S001_003_00000001.png`,
`Emotion/S001/003/S001_003_00000010_emotion.txt` (last frame only, one float
1..7), `Landmarks/S001/003/S001_003_00000001_landmarks.txt` (every frame, 68 lines).

The modules, by what they draw (import from them directly; this package re-exports
nothing):
- `shape`: the geometry in face units: face proportions, the mean shape, the landmark
  index groups (JAW, R_EYE, INNER_LIPS, ...) and each point's depth;
- `identity`: a person: the neutral shape deformed from the mean, skin, hair, eyes,
  brows, glasses, beard, background and shirt (`random_identity`, `make_identity`);
- `expression`: the seven CK+ expressions as landmark displacements, and the
  neutral -> peak easing;
- `canvas`: the raster side: splines, strokes, polygon fills, the head `Pose` and
  `pose_points`, the painting canvas and the skin and hair textures;
- `parts`: the painted parts of the head: hair, neck, ears, face, folds, beard, brows,
  eyes, nose, mouth, glasses;
- `render`: one frame (aux points for skull, hair, ears and neck; the subject's static
  background; lighting) and one neutral -> peak sequence;
- `write`: the CK+ tree on disk (`write_synthetic_ckplus`), its file formats, the
  `SYNTHETIC.md` marker and `GENERATOR_VERSION`.
"""
