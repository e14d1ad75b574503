"""Methods ("recipes") by the official top-level `app` key. A recipe is one file that registers itself here."""
from jepa_scale.recipes.base import RECIPES, Recipe
from jepa_scale.recipes import vjepa  # noqa: F401  (registers "vjepa")
from jepa_scale.recipes import vjepa2  # noqa: F401  (registers "vjepa2")
from jepa_scale.recipes import ijepa  # noqa: F401  (registers "ijepa")
from jepa_scale.recipes import avjepa  # noqa: F401  (registers "avjepa")

__all__ = ["RECIPES", "Recipe"]
