"""Config names as users type them: `--config vith16_384.yaml` (or `vith16_384`) finds the repository's shipped
config from any working directory; an unknown name lists the shipped ones, the closest first."""
from __future__ import annotations

import difflib
from pathlib import Path

import jepa_scale
from jepa_scale.config.loader import ConfigError

REPO_ROOT = Path(jepa_scale.__file__).resolve().parents[1]
# where shipped configs live, searched in this order (evals/ appears with the eval configs)
CONFIG_DIRS = ("configs/pretrain", "configs/evals")
SUFFIXES = (".yaml", ".yml")


def config_dirs() -> list[Path]:
    """The shipped config folders that exist (none for a package installed without its repository)."""
    return [REPO_ROOT / d for d in CONFIG_DIRS if (REPO_ROOT / d).is_dir()]


def shipped_configs(dirs: list[Path] | None = None) -> list[Path]:
    """Every shipped config file, folder by folder in search order, names sorted within a folder."""
    dirs = config_dirs() if dirs is None else dirs
    return [p for d in dirs for p in sorted(d.iterdir()) if p.is_file() and p.suffix in SUFFIXES]


def resolve_config_path(path: str | Path, dirs: list[Path] | None = None) -> Path:
    """The file `--config path` means: the path itself when it exists (relative to the working directory, as
    always); else, for a bare name without a '/', the shipped config of that name (`.yaml` optional). Raises
    ConfigError naming what was asked for and the closest shipped configs."""
    path = Path(path)
    if path.is_file():
        return path
    shipped = shipped_configs(dirs)
    if _is_bare_name(path):
        found = [p for p in shipped if p.name in _candidate_names(path.name)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:  # the same name in pretrain/ and evals/: only a path says which
            raise ConfigError(f"{path}: ambiguous config name, shipped as {', '.join(_repo_rel(p) for p in found)}; "
                              f"give one of these paths")
        raise ConfigError(f"{path}: no such config file; {_listing(path.name, shipped)}")
    close = _closest(path.name, shipped)
    hint = f" (closest shipped config: {close[0].name} in {_repo_rel(close[0].parent)}/)" if close else ""
    raise ConfigError(f"{path}: no such config file{hint}")


def _is_bare_name(path: Path) -> bool:
    """A name typed without any folder: only then is it looked up among the shipped configs (a path with a
    folder that does not exist is a typo in that path, not a shipped name)."""
    return len(path.parts) == 1 and "/" not in str(path) and "\\" not in str(path)


def _candidate_names(name: str) -> list[str]:
    return [name] if name.endswith(SUFFIXES) else [name, *(name + s for s in SUFFIXES)]


def _similarity(name: str, config: Path) -> float:
    query = name if name.endswith(SUFFIXES) else name + ".yaml"  # `vith16_38` compares like `vith16_38.yaml`
    return difflib.SequenceMatcher(None, query, config.name).ratio()


def _ranked(name: str, shipped: list[Path]) -> list[Path]:
    """Shipped configs by similarity to `name`, most similar first (ties keep the search order)."""
    return sorted(shipped, key=lambda p: -_similarity(name, p))


def _closest(name: str, shipped: list[Path], cutoff: float = 0.6) -> list[Path]:
    return [p for p in _ranked(name, shipped) if _similarity(name, p) >= cutoff]


def _listing(name: str, shipped: list[Path]) -> str:
    """'shipped configs: closest.yaml (configs/pretrain/), next.yaml, ...', every folder named at its first entry."""
    if not shipped:
        return f"no shipped configs in {REPO_ROOT / 'configs'} (a package installed without its repository?)"
    seen, items = set(), []
    for p in _ranked(name, shipped):
        folder = _repo_rel(p.parent)
        items.append(p.name if folder in seen else f"{p.name} ({folder}/)")
        seen.add(folder)
    return "shipped configs: " + ", ".join(items)


def _repo_rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
