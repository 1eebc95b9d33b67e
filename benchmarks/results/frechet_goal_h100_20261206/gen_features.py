"""The tracked feature net's features of generated sets (the evaluation pipeline of the shipped recipe's config, as
../frechet_reference_cpu_20261206/ read the real cases), into one npz: for reading them against
../frechet_reference_cpu_20261206/all_features.npz's real cases without carrying the volumes.

    DATA=/tmp/fg THREADS=16 python gen_features.py OUT.npz NAME=FOLDER[,FOLDER...] ...
"""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # benchmarks/
sys.path.insert(0, str(HERE.parent / "tail_frechet_cpu_20261206"))
from quality_common import named_folder_sets  # noqa: E402
from tail_pair import real_cases_and_net  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1])
    sets = named_folder_sets(sys.argv[2:])
    real, net, _ = real_cases_and_net(1)  # the pipeline and the net ($DATA, $THREADS); one real case loaded
    feats = {k: real.synthetic_features(net, v) for k, v in sets.items()}
    np.savez_compressed(out, **feats)
    print({k: v.shape for k, v in feats.items()})


if __name__ == "__main__":
    main()
