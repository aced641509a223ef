"""The maths, one idea per module (the lowest layer above ``config``): vector and lookup-free
quantization, the Dynamic Routing Module, the DWT budget, the Budget Prior Transformer, the patch
discriminator, SSIM, the encoders (the pixel VQGAN-style one and frozen pretrained pyramids) and the
detectors built from them. Nothing here reads data sets, writes run folders or knows the command line."""
