"""Stage 3, the model (paper Sec. III-A/B, Tables 1-3, Eq. 1-7).

    nets.py      generator (E_ini, migration unit blocks, label planes, decoder), discriminators
    describe.py  layer-by-layer shapes beside Tables 1-3, parameter and FLOP counts (notebook 02)
    losses.py    GAN, perceptual and pixel losses, L_G and L_D (Eq. 4-7)
    generate.py  the one place the generator is used: landmarks + label -> generated uint8 faces
    trained.py   the one way to load a trained generator with its config and provenance
"""
