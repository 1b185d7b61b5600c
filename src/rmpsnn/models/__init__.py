"""Model zoo: ``create(name, num_classes=..., **kw)``, ``list_models()``.

ANNs for conversion (``rmpsnn.models.ann``): ``ann_cpu_net``, ``ann_vgg16``, ``ann_resnet20``,
``ann_resnet34`` -- ReLU (or QCFS), average pooling, BN or dropout, optional biases.

Spiking networks for direct training (``rmpsnn.models.spiking``): ``resnet19``, ``resnet20``,
``vgg16``, ``resnet18``, ``resnet34``, ``cpu_net`` -- ``create(name, num_classes=..., timesteps=...)``.
"""

from . import ann, spiking
from .qcfs import QCFS
from .registry import create, list_models, register

__all__ = ["QCFS", "ann", "create", "list_models", "register", "spiking"]
