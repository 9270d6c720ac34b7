"""Model loading: checkpoint formats, architectures, the pixel-space wrapper."""

from robench.models import archs as _archs  # noqa: F401  (registers built-in architectures)
from robench.models.loading import build_arch, file_sha256, load_model, module_sha256
from robench.models.wrapper import ModelHandle, Normalize, check_logits

__all__ = ["ModelHandle", "Normalize", "build_arch", "check_logits", "file_sha256", "load_model", "module_sha256"]
