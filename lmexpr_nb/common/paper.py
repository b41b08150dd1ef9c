"""The paper's printed numbers (Li, Qi & Sun 2021), so every table shows ours beside them.

Transcribed from the paper's Tables 2-7; shapes are (height, width, channels) as printed.
"""
from __future__ import annotations

# Table 2: decoder, output shape per layer at 128x128 input
TABLE2_DECODER = [
    ("ConvTranspose2d1", (64, 64, 128)), ("ConvTranspose2d2", (128, 128, 64)),
    ("ReflectionPad2d", (134, 134, 64)), ("Conv", (128, 128, 3)),
]
# Table 3: discriminator, output shape per conv at 128x128 input
TABLE3_DISCRIMINATOR = [
    ("Conv1", (64, 64, 64)), ("Conv2", (32, 32, 128)), ("Conv3", (16, 16, 256)),
    ("Conv4", (15, 15, 512)), ("Conv5", (14, 14, 1)),
]
# Table 4: expression recognition accuracy (%) on Oulu-CASIA vs augmentation factor
TABLE4_AUGMENTATION = {0: 67.3, 1: 68.6, 5: 71.4, 10: 76.2, 100: 76.2}
# Table 5: image quality on CK+ (PSNR dB, SSIM, FID)
TABLE5_QUALITY = {
    "GAFP-GAN": {"PSNR": 20.123, "SSIM": 0.653, "FID": 73.65},
    "GC-GAN": {"PSNR": 27.665, "SSIM": 0.769, "FID": 68.36},
    "CDAAE": {"PSNR": 26.973, "SSIM": 0.765, "FID": 81.48},
    "our method": {"PSNR": 23.004, "SSIM": 0.775, "FID": 67.69},
}
# Table 6: identity preservation (%), gallery = real, probe = generated
TABLE6_IDENTITY = {
    "original": {"VGG-Face": (100, 75.54, 48.30), "Light CNN": (100, 79.86, 59.57)},
    "C-GAN": {"VGG-Face": (71.33, 52.50, 19.97), "Light CNN": (75.21, 48.45, 36.91)},
    "ExprGAN": {"VGG-Face": (62.31, 44.69, 13.27), "Light CNN": (67.49, 49.31, 26.40)},
    "our method": {"VGG-Face": (82.13, 58.45, 21.64), "Light CNN": (84.62, 63.86, 44.17)},
}
TABLE6_COLUMNS = ("Rank-1", "TAR@FAR=1%", "TAR@FAR=0.1%")
# Table 7: ablation FID
TABLE7_ABLATION = {
    "w/o feature initialize network": 76.85,
    "w/o expression label smooth": 69.48,
    "all together": 67.69,
}
# Sec. IV-B: loss weights and optimiser
LOSS_WEIGHTS = {"lambda_gan": 5, "lambda_perceptual": 10, "lambda_pixel": 10}
