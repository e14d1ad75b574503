"""Write an sbatch script for pretraining or a frozen eval (by the config's kind):
`python launch/slurm.py --config FILE --out job.sh [options]`.

See jepa_scale/launch/slurm.py (and --help) for the layouts (srun, deepspeed), signals and requeue."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when jepa_scale is not installed

from jepa_scale.launch.slurm import main

if __name__ == "__main__":
    sys.exit(main())
