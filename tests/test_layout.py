"""The package's layering rules, checked on the source: nothing outside models/ names a model's attributes, the
engines do not import the runtime above them, and the training loop names no engine, model or format."""
import ast
import inspect
import re
from pathlib import Path

from jepa_scale.trainer import Trainer

PACKAGE = Path(__file__).resolve().parents[1] / "jepa_scale"
MODEL_ATTRIBUTES = re.compile(r"\.(blocks|predictor_blocks|mlp|attn|patch_embed|mask_tokens)\b")


def sources(folder: Path):
    return [(p, p.read_text()) for p in sorted(folder.rglob("*.py"))]


def imported_modules(text: str) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_only_models_name_model_attributes():
    offenders = [f"{p.relative_to(PACKAGE)}:{i}: {line.strip()}"
                 for p, text in sources(PACKAGE) if "models" not in p.relative_to(PACKAGE).parts[:1]
                 for i, line in enumerate(text.splitlines(), 1) if MODEL_ATTRIBUTES.search(line.split("#")[0])]
    assert not offenders, "\n".join(offenders)


def test_engines_and_leaves_do_not_import_the_runtime_above_them():
    above = ("jepa_scale.trainer", "jepa_scale.tasks", "jepa_scale.recipes", "jepa_scale.train", "jepa_scale.evals")
    for folder in ("distributed", "optim", "models", "data", "masks", "checkpoint", "monitor"):
        for p, text in sources(PACKAGE / folder):
            bad = [m for m in imported_modules(text) if m.startswith(above)]
            assert not bad, f"{p.relative_to(PACKAGE)} imports {bad}"


def test_the_loop_names_no_engine_kind_model_or_checkpoint_format():
    loop = inspect.getsource(Trainer.run)
    words = re.compile(r"ddp|fsdp|deepspeed|zero|sharded|\.pth|encoder|predictor|target|official", re.I)
    assert not words.findall(loop), words.findall(loop)
    assert len(loop.splitlines()) <= 20
