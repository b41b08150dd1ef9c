"""lmexpr-nb: a notebook reproduction kit for Li, Qi & Sun (IEEE Access 2021),
"Facial Landmarks and Expression Label Guided Photorealistic Facial Expression Synthesis".

One folder per stage of the pipeline (README.md beside this file says what flows between them):
    data/ -> landmarks/ -> model/ -> train/ -> metrics/ -> experiments/ -> explore/
with common/ (plumbing), bench/ (benchmarks) and runner/ (the notebooks, the report) beside them.
"""
__version__ = "0.1.0"

PAPER = ("D. Li, W. Qi, S. Sun, 'Facial Landmarks and Expression Label Guided Photorealistic "
         "Facial Expression Synthesis', IEEE Access 9, 2021, doi:10.1109/ACCESS.2021.3072057")
