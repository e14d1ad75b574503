"""jepa_scale: V-JEPA pretraining and frozen evaluation on a large-scale training stack."""

__version__ = "0.1.0"


def load_pretrained(config, checkpoint, device="cpu", weights_only=True):
    """See `jepa_scale.pretrained.load_pretrained` (imported lazily so `import jepa_scale` stays cheap)."""
    from jepa_scale.pretrained import load_pretrained as _load

    return _load(config, checkpoint, device=device, weights_only=weights_only)


def load_probe(config, checkpoint, device="cpu"):
    """See `jepa_scale.evals.load.load_probe`: an eval config's probe heads loaded strictly from `checkpoint`, and
    the frozen encoder when the config's pretrained file exists."""
    from jepa_scale.evals.load import load_probe as _load

    return _load(config, checkpoint, device=device)


__all__ = ["load_pretrained", "load_probe", "__version__"]
