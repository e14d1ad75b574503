"""Submit pretraining or a frozen eval through submitit:
`python launch/submit.py --config FILE [--cluster slurm|local|debug] [options]`.

See jepa_scale/launch/submit.py (and --help): the job resumes from its newest checkpoint whenever it is requeued."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when jepa_scale is not installed

from jepa_scale.launch.submit import main

if __name__ == "__main__":
    sys.exit(main())
