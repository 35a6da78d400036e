"""Networks for `sepbench model` in the `package.module:factory` form, written out where the library that
defines them cannot be imported beside this machine's torch (torchvision's CPU builds come only from
PyTorch's own index). `resnet18` is torchvision's ResNet-18 (He et al. 2016, torchvision.models.resnet18),
module for module and with the same names, so its census is torchvision's:

    sepbench model benchmarks.networks:resnet18
"""

from __future__ import annotations

from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3×3 convs with BatchNorm and ReLU, and the identity (or a strided 1×1 conv) added back."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)  # after the convs, as torchvision runs it
        return self.relu(out + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [64, 128, 256, 512]
        c_in = 64
        for i, width in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(c_in, width, stride), BasicBlock(width, width)))
            c_in = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(self.avgpool(x).flatten(1))


def resnet18() -> nn.Module:
    return ResNet18()


def _divisible(v: float, divisor: int = 8) -> int:
    """torchvision's and timm's channel rounding: to a multiple of 8, never more than 10 % below."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn_act(c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.Hardswish) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: conv (no bias, symmetric padding), BatchNorm, activation."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(c_out)]
    if act is not None:
        layers.append(act(inplace=True) if act in (nn.ReLU, nn.Hardswish, nn.SiLU) else act())
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Global pool, 1×1 conv down, activation, 1×1 conv up, gate: torchvision's and timm's SE."""

    def __init__(self, channels: int, squeeze: int, act: type[nn.Module] = nn.ReLU,
                 gate: type[nn.Module] = nn.Hardsigmoid, names: tuple[str, str] = ("fc1", "fc2")) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.down, self.up = names
        setattr(self, names[0], nn.Conv2d(channels, squeeze, 1))
        self.activation = act()
        setattr(self, names[1], nn.Conv2d(squeeze, channels, 1))
        self.scale_activation = gate()

    def forward(self, x: Tensor) -> Tensor:
        s = getattr(self, self.up)(self.activation(getattr(self, self.down)(self.avgpool(x))))
        return x * self.scale_activation(s)


class InvertedResidualV3(nn.Module):
    """MobileNetV3's block as torchvision builds it: expand, depthwise, SE, project, the input added back."""

    def __init__(self, c_in: int, k: int, expanded: int, c_out: int, se: bool, act: type[nn.Module],
                 stride: int) -> None:
        super().__init__()
        self.residual = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expanded != c_in:
            layers.append(_conv_bn_act(c_in, expanded, 1, act=act))
        layers.append(_conv_bn_act(expanded, expanded, k, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcitation(expanded, _divisible(expanded // 4)))
        layers.append(_conv_bn_act(expanded, c_out, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.residual else out


# torchvision's mobilenet_v3_large: input, kernel, expanded, output, SE, activation, stride.
V3_LARGE = [(16, 3, 16, 16, False, nn.ReLU, 1), (16, 3, 64, 24, False, nn.ReLU, 2),
            (24, 3, 72, 24, False, nn.ReLU, 1), (24, 5, 72, 40, True, nn.ReLU, 2),
            (40, 5, 120, 40, True, nn.ReLU, 1), (40, 5, 120, 40, True, nn.ReLU, 1),
            (40, 3, 240, 80, False, nn.Hardswish, 2), (80, 3, 200, 80, False, nn.Hardswish, 1),
            (80, 3, 184, 80, False, nn.Hardswish, 1), (80, 3, 184, 80, False, nn.Hardswish, 1),
            (80, 3, 480, 112, True, nn.Hardswish, 1), (112, 3, 672, 112, True, nn.Hardswish, 1),
            (112, 5, 672, 160, True, nn.Hardswish, 2), (160, 5, 960, 160, True, nn.Hardswish, 1),
            (160, 5, 960, 160, True, nn.Hardswish, 1)]


def mobilenet_v3_large() -> nn.Module:
    """torchvision's MobileNetV3-Large (Howard et al. 2019), with torchvision's module names."""
    features: list[nn.Module] = [_conv_bn_act(3, 16, 3, 2)]
    features += [InvertedResidualV3(*row) for row in V3_LARGE]
    features.append(_conv_bn_act(160, 960, 1))
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(*features))
    model.add_module("avgpool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flatten", nn.Flatten(1))
    model.add_module("classifier", nn.Sequential(nn.Linear(960, 1280), nn.Hardswish(inplace=True), nn.Dropout(0.2),
                                                 nn.Linear(1280, 1000)))
    return model


class _EfficientBlock(nn.Module):
    """timm's DepthwiseSeparableConv (expansion 1) and InvertedResidual (MBConv), with timm's names:
    conv_pw (expand), conv_dw, se (conv_reduce, conv_expand), conv_pwl (project); the depthwise-separable
    block, which does not expand, calls its projection conv_pw."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, expansion: int) -> None:
        super().__init__()
        mid = c_in * expansion
        self.residual = stride == 1 and c_in == c_out
        self.expand = expansion != 1
        if self.expand:
            self.conv_pw = nn.Conv2d(c_in, mid, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(mid)
        self.conv_dw = nn.Conv2d(mid, mid, k, stride, (k - 1) // 2, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.act = nn.SiLU(inplace=True)
        self.se = SqueezeExcitation(mid, int(c_in * 0.25), nn.SiLU, nn.Sigmoid, ("conv_reduce", "conv_expand"))
        project = nn.Conv2d(mid, c_out, 1, bias=False)
        if self.expand:
            self.conv_pwl = project
        else:
            self.conv_pw = project
        self.bn3 = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.conv_pw(x))) if self.expand else x
        project = self.conv_pwl if self.expand else self.conv_pw
        out = self.bn3(project(self.se(self.act(self.bn2(self.conv_dw(out))))))
        return out + x if self.residual else out


# timm's efficientnet_b0: kernel, stride, expansion, output channels, repeats, per stage.
B0_STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
             (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]


class EfficientNetB0(nn.Module):
    """timm's efficientnet_b0 (Tan and Le 2019; symmetric padding, not the TensorFlow port's "same"), with
    timm's module names."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.act = nn.SiLU(inplace=True)
        stages, c_in = [], 32
        for k, stride, expansion, c_out, repeats in B0_STAGES:
            blocks = [_EfficientBlock(c_in if i == 0 else c_out, c_out, k, stride if i == 0 else 1, expansion)
                      for i in range(repeats)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
        self.blocks = nn.Sequential(*stages)
        self.conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.classifier = nn.Linear(1280, 1000)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.act(self.bn1(self.conv_stem(x))))
        x = self.act(self.bn2(self.conv_head(x)))
        return self.classifier(x.mean((2, 3)))


def efficientnet_b0() -> nn.Module:
    return EfficientNetB0()
