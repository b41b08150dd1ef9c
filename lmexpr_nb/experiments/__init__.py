"""Stage 6, the paper's experiments: every table and figure of Sec. IV-C, with two free baselines.

    evalset.py    the methods compared (copy, warp, ours), the pair protocols, the generated images
    baselines.py  copy source; warp to the target landmarks (piecewise affine)
    tables.py     writing a table as CSV + Markdown with provenance columns; numbers for metrics JSON
    figures.py    Figs. 7-9: comparison rows, landmark transfer across identities, same identity
    table4.py     expression recognition with the training set enlarged by generated faces
    table5.py     image quality: PSNR, SSIM, FID (or the labelled FD-dlib stand-in), KID, landmark NME
    table6.py     identity preservation: Rank-1, TAR@FAR per recogniser
    table7.py     the module ablation, trained with one budget and evaluated alike
"""
