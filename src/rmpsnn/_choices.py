"""Names the command line offers as choices, kept free of torch imports so that ``rmpsnn --help``
answers at once.  The library modules import them from here; a test checks that ``ANN_MODELS``
equals the registry's ANN models."""

BALANCE_METHODS = ("auto", "mse", "spike-max", "act-max", "percentile", "qcfs", "none")
CALIBRATION_METHODS = ("bias", "none")
ANN_MODELS = ("ann_cpu_net", "ann_resnet20", "ann_resnet34", "ann_vgg16")
