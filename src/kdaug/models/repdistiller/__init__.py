"""RepDistiller's CIFAR model zoo (Tian et al. 2020, HobbitLong/RepDistiller ``models/``),
reimplemented on the :class:`~kdaug.models.base.Classifier` interface; importing this
package registers resnet8/14/20/32/44/56/110, resnet8x4, resnet32x4, wrn_16_1, wrn_16_2,
wrn_40_1, wrn_40_2, vgg8/11/13/16/19 (with BN), MobileNetV2 (``mobile_half``), ShuffleV1,
ShuffleV2 and ResNet50. Layer structures and parameter counts follow the reference;
fixed-size average pools are global (adaptive) pools so 64x64 inputs work too.
"""

from __future__ import annotations

from kdaug.models.repdistiller import (  # noqa: F401  (registers the models)
    mobilenetv2,
    resnet_cifar,
    resnet_imagenet_style,
    shufflenet,
    vgg,
    wrn,
)
