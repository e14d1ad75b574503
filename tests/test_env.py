from jepa_scale.distributed.env import DistEnv, detect


def test_launcher_detection():
    assert detect({}) == DistEnv(0, 0, 1, "python")
    torchrun = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "29500"}
    assert detect(torchrun) == DistEnv(5, 1, 8, "torchrun")
    # the deepspeed launcher exports the same variables and passes --local_rank
    assert detect({"RANK": "3", "WORLD_SIZE": "4"}, local_rank_arg=3) == DistEnv(3, 3, 4, "deepspeed")
    slurm = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1"}
    assert detect(slurm) == DistEnv(9, 1, 16, "slurm")
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == DistEnv()  # an interactive allocation, one task
