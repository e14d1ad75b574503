"""Starting jobs: local process groups today (torchrun); SLURM, hostfiles and submitit with the launch layer."""
