"""A real network, layer by layer: `spec` builds it from a name (torchvision, timm, the zoo, a user's
factory), `census` records every Conv2d as the network uses it, with its exact cost."""
