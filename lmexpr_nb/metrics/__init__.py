"""Stage 5, metrics (paper Sec. IV-C, Eq. 8-10): one short module per metric, one registry.

    registry.py        the metrics by name; every table computes its numbers through it
    result.py          MetricResult (value, N, provenance: weights or the named stand-in), helpers
    psnr_ssim.py       PSNR (Eq. 8), SSIM (Eq. 9) in two labelled variants, [-1,1] -> uint8
    fid.py             Frechet distance (Eq. 10), KID; FID with Inception or the labelled FD-dlib stand-in
    inception.py       the FID Inception-v3 (pytorch-fid layout and preprocessing), 2048-d features
    identity.py        verification maths: cosine scores, Rank-1, TAR@FAR (step ROC)
    recognisers.py     dlib ResNet descriptor (default), Light CNN-29 v2, VGG-Face: `embed(images)`
    expression.py      a small expression CNN trained on real training frames; its accuracy
    landmark_error.py  dlib landmarks re-detected on generated faces vs the targets, inter-ocular NME
"""
