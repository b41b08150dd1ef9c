"""Stage 2, landmarks: from a photo or a frame to 68 points, a crop and heatmaps (paper Sec. IV-A).

    detect.py      dlib HOG detection + 68-point predictor, tracking through a sequence, the crop
    align.py       the ONE similarity alignment of two 68-point shapes (Fig. 8's transfer, the
                   explorer's donor, Table 4's donor rows, the expression model)
    heatmaps.py    68 landmarks -> 68 Gaussian heatmaps (the generator's landmark input)
    preprocess.py  a dataset's records -> detected/tracked landmarks -> crops -> data/cache.py's cache
"""
