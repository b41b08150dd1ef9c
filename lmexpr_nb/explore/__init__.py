"""Stage 7, exploring a trained model: the explorer of notebook 09 and editing a photo of any size.

    expressions.py  target landmarks from an expression and an intensity, region edits, soft labels
    state.py        the explorer's state and everything it shows, as plain functions (no widgets)
    explorer.py     the ipywidgets explorer: wiring only, over state.py
    infer.py        one call from a photo to an edited photo: detect, crop, generate, paste back
    intensity.py    does the intensity slider visibly change the face? (measured for notebook 09)
"""
