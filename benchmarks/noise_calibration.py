"""The one-seed calibration that fixed the sigma of the mini noise-trained control
(``zoo.MATCHED_NOISE``): the Gaussian-noise sigma whose clean accuracy is closest to the L2
eps-1 family's, so that the control differs from the robust source in how it was made robust,
not in how accurate it is (issue 22, item 3).

Rule (fixed before running): train seed 0 of mini/fmnist/noise/<sigma> for each sigma below;
pick the sigma whose clean test accuracy is closest to the mean clean accuracy of the listed
mini L2 eps-1 seeds. Run once on 2026-12-07 (2 cores, ~50 s per source):

    sigma 0.2: 80.9%   sigma 0.3: 79.5%   sigma 0.4: 78.0%   L2 eps 1 (s0-s5): 79.1%  -> 0.3

Every build checks the match again on its own source seeds (chapter 2 states both families'
clean accuracies with intervals). Run: ``python benchmarks/noise_calibration.py`` (trains into
``$RT_CACHE_DIR``; give it a scratch cache).
"""
import sys
import time

SIGMAS = ("0.2", "0.3", "0.4")


def main() -> None:
    import numpy as np

    from robust_transfer import zoo
    name, families, *rest = zoo._TRAINED_DATA["fmnist"]
    listed = {(norm, e) for norm, e, _ in families}
    zoo._TRAINED_DATA["fmnist"] = (name, families + tuple(   # make the candidates valid ids
        ("noise", s, 1) for s in SIGMAS if ("noise", s) not in listed), *rest)
    robust = [s for s in zoo.list_sources("mini") if zoo.spec(s).family == "mini/fmnist/l2/1.0"]
    target = float(np.mean([zoo.load_grid([s], progress=False)[s][1]["clean_acc"]
                            for s in robust]))
    accs = {}
    for sigma in SIGMAS:
        sid, t = f"mini/fmnist/noise/{sigma}/s0", time.time()
        accs[sigma] = zoo.load_grid([sid], progress=False)[sid][1]["clean_acc"]
        print(f"sigma {sigma}: clean {100 * accs[sigma]:.1f}% ({time.time() - t:.0f} s)")
    best = min(accs, key=lambda s: abs(accs[s] - target))
    print(f"L2 eps 1 ({len(robust)} seeds): {100 * target:.1f}%  -> sigma {best}")


if __name__ == "__main__":
    sys.exit(main())
