"""The network and everything that defines what its outputs mean.

``network`` (backbone taps -> extra blocks -> heads; :func:`build_model` assembles it from a
config), ``anchors`` (default boxes), ``box_coder`` (deltas <-> boxes), ``matcher`` (anchors <->
ground truth), ``loss`` (training objective), ``postprocess`` (raw outputs -> detections),
``checkpoint`` (the model on disk), ``convert`` (torchvision's weights), ``complexity``
(params and multiply-adds beside the papers).
"""

from ssdlite.model.network import SSDLite, build_model, detection_norm_layer, scaled_extra_channels

__all__ = ["SSDLite", "build_model", "detection_norm_layer", "scaled_extra_channels"]
