"""jepa_scale: V-JEPA pretraining and frozen evaluation on a large-scale training stack."""

__version__ = "0.1.0"


def load_pretrained(config, checkpoint, device="cpu", weights_only=True):
    """See `jepa_scale.pretrained.load_pretrained` (imported lazily so `import jepa_scale` stays cheap)."""
    from jepa_scale.pretrained import load_pretrained as _load

    return _load(config, checkpoint, device=device, weights_only=weights_only)


__all__ = ["load_pretrained", "__version__"]
