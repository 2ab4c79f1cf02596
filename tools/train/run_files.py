"""The names of the files and folders a run folder holds (README: "Outputs"), in one place: the Trainer,
its CheckpointSaver, run_folder (what a run owns, what ``overwrite: True`` removes), validate.py, the split
and TensorBoard write or read them under these names. Nothing else is imported here, so any layer can."""

CONFIG_FILE_NAME = "config.yaml"  # the run's config as checked (finetune.py saves it)
RESUME_FILE = "resume.ckpt"
PREVIOUS_RESUME_FILE = "resume_prev.ckpt"  # the state before, kept in case the newest is damaged
SUMMARY_FILE = "summary.json"  # written when the run ends (all epochs or an early stop): the run is finished
CURVES_FILE = "training_curves.png"
RESULTS_TABLE_FILE = "results.txt"  # one row per epoch, aligned
RESULTS_CSV_FILE = "results.csv"
LOCK_FILE = ".run.lock"
SPLIT_DIR = "split"  # finetune.py's split of a folder of class folders (tools/split_folder.py)
TENSORBOARD_DIR = "tensorboard"  # tensorboard: True's event files


def best_checkpoint_name(model):
    """The weights of the best epoch so far."""
    return f"{model}_best.ckpt"


def last_checkpoint_name(model):
    """The weights after the newest epoch."""
    return f"{model}_last.ckpt"


def epoch_checkpoint_name(model, epoch):
    """The weights after ``epoch`` (every ckpt_save_interval epochs, keep_checkpoint_max of them kept)."""
    return f"{model}-{epoch}.ckpt"


def average_checkpoint_name(model):
    """average_checkpoints: the mean of kept epoch checkpoints' weights (tools/train/techniques/weight_averaging.py)."""
    return f"{model}_avg.ckpt"
