"""YAML -> typed config tree, with errors that name the file, line, key path and the closest valid key."""
from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from jepa_scale.config.schema import ignored_keys

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value or key is wrong; the message says where."""


def _key_lines(text: str) -> dict[str, int]:
    """Map 'a.b[0].c' key paths to their 1-based line in the YAML text."""
    lines: dict[str, int] = {}

    def walk(node, path):
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                sub = f"{path}.{k.value}" if path else str(k.value)
                lines[sub] = k.start_mark.line + 1
                walk(v, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                sub = f"{path}[{i}]"
                lines[sub] = v.start_mark.line + 1
                walk(v, sub)

    try:
        walk(yaml.compose(text, Loader=yaml.SafeLoader), "")
    except yaml.YAMLError:
        pass
    return lines


class _Builder:
    """Builds dataclasses from plain dicts, checking every key and type."""

    def __init__(self, source: str, lines: dict[str, int]):
        self.source, self.lines = source, lines

    def fail(self, path: str, msg: str):
        line = self.lines.get(path) or self.lines.get(re.sub(r"(\[\d+\]|\.[^.\[]+)$", "", path))
        where = f"{self.source}:{line}" if line else self.source
        raise ConfigError(f"{where}: {path}: {msg}")

    def build(self, cls, raw: Any, path: str):
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.fail(path or "<root>", f"expected a mapping for section {cls.__name__}, got {type(raw).__name__}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        for key in raw:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {', '.join(names)})"
                self.fail(f"{path}.{key}" if path else str(key), "unknown key" + hint)
        kwargs = {k: self.value(hints[k], v, f"{path}.{k}" if path else k) for k, v in raw.items()}
        return cls(**kwargs)

    def value(self, tp, v, path):
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            if v is None and type(None) in args:
                return None
            return self.value(next(a for a in args if a is not type(None)), v, path)
        if dataclasses.is_dataclass(tp):
            return self.build(tp, v, path)
        if origin is list:
            if not isinstance(v, list):
                self.fail(path, f"expected a list, got {v!r}")
            return [self.value(args[0], x, f"{path}[{i}]") for i, x in enumerate(v)]
        if v is None:
            self.fail(path, f"must not be null (expected {tp.__name__})")
        if tp is bool:
            if not isinstance(v, bool):
                self.fail(path, f"expected true or false, got {v!r}")
            return v
        if tp is int:
            if isinstance(v, bool) or not isinstance(v, int):
                self.fail(path, f"expected an integer, got {v!r}")
            return v
        if tp is float:
            if isinstance(v, str):  # PyYAML reads `1e-3` (no dot) as a string
                try:
                    return float(v)
                except ValueError:
                    pass
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                self.fail(path, f"expected a number, got {v!r}")
            return float(v)
        if tp is str:
            if not isinstance(v, str):
                self.fail(path, f"expected a string, got {v!r}")
            return v
        raise TypeError(f"unsupported config field type {tp} at {path}")


def _apply_override(raw: dict, assignment: str):
    """`a.b.c=value` or `mask[1].num_blocks=4` (also `mask.1.num_blocks`): set it in the raw dict."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment}: expected KEY=VALUE")
    key, text = assignment.split("=", 1)
    parts = [p for p in re.split(r"[.\[\]]+", key.strip()) if p]
    value = yaml.safe_load(text) if text.strip() else None
    node = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {assignment}: index {part!r} out of range for a list of {len(node)}")
            part = int(part)
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]


def _section(raw, name: str) -> dict:
    value = raw.get(name) if isinstance(raw, dict) else None
    return value if isinstance(value, dict) else {}


def recipe_of(raw) -> str:
    """The recipe a raw pretraining config is for. The official files do not always say: V-JEPA 2's train configs
    keep `app: vjepa` (they are told apart by their V2 keys), and I-JEPA's have no `app` key (its `meta:` section
    holds the model name)."""
    app = raw.get("app") if isinstance(raw, dict) else None
    if app is None and "model_name" in _section(raw, "meta"):
        return "ijepa"
    app = app or "vjepa"
    data, model = _section(raw, "data"), _section(raw, "model")
    v2 = (data.get("dataset_fpcs") is not None or data.get("fps") is not None or model.get("use_rope") is True
          or raw.get("folder") is not None)
    return "vjepa2" if app == "vjepa" and v2 else app


def config_root(raw, builder: _Builder) -> type:
    """The config class of the recipe the file is for (each method owns its sections and keys)."""
    from jepa_scale.config.eval_schema import eval_root, is_eval_config
    from jepa_scale.recipes import RECIPES

    if is_eval_config(raw):  # an eval config names its kind in `eval_name`, as the official launchers read it
        return eval_root(raw, builder.fail)
    recipe = recipe_of(raw)
    if recipe not in RECIPES:
        builder.fail("app", RECIPES.unknown(recipe))
    return RECIPES.get(recipe).config_class


def load_config(path: str | Path | None = None, overrides: list[str] = (), raw: dict | None = None):
    """Read a pretraining or eval YAML (official or ours), apply `--set` overrides, check it against its config
    root (the recipe `app` names, or the eval schema); raise ConfigError naming the file, line and key."""
    source, lines = "<dict>", {}
    if path is not None:
        from jepa_scale.config.names import resolve_config_path  # names imports ConfigError from here

        path = resolve_config_path(path)  # a bare name finds a shipped config; raises ConfigError otherwise
        text = path.read_text()
        source, lines = str(path), _key_lines(text)
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    raw = dict(raw or {})
    for assignment in overrides:
        _apply_override(raw, assignment)
    builder = _Builder(source, lines)
    root = config_root(raw, builder)
    for key, msg in getattr(root, "missing_keys", lambda _: [])(raw):  # roots whose official reader needs every key
        builder.fail(key, msg)
    cfg = builder.build(root, raw, "")
    for key, msg in cfg.problems():
        builder.fail(key, msg)
    for key, why in ignored_keys(raw):
        log.info("%s: %s is ignored: %s", source, key, why)
    return cfg


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | Path):
    """Write the resolved config; it loads back to an equal config."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
