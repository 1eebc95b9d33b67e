"""Which interval for a synthetic set's Frechet distance (session 39): a bootstrap over the generated cases or a
delete-one jackknife, against the spread of fresh draws from the same generator. Features of the tracked feature
net's size (90 dimensions), 64 generated cases against a fixed reference of 192. Run: python check.py"""
import numpy as np

from medidiff.eval.image_metrics import frechet_distance, frechet_jackknife

DIM = 90


def trial(name, real, syn, trials, boot):
    ref = real(192)
    fresh = [frechet_distance(syn(64), ref) for _ in range(100 if boot else 200)]
    centre = float(np.median(fresh))
    lo_f, hi_f = np.percentile(fresh, [2.5, 97.5])
    print(f"{name}: fresh draws median {centre:.2f}, 2.5-97.5 % {lo_f:.2f}-{hi_f:.2f}")
    held = {"jackknife": 0, "bootstrap percentile": 0, "bootstrap basic": 0}
    widths = []
    for _ in range(trials):
        x = syn(64)
        f = frechet_distance(x, ref)
        lo, hi = frechet_jackknife(x, ref)["frechet_interval"]
        widths.append(hi - lo)
        held["jackknife"] += lo <= centre <= hi
        if boot:
            b = [frechet_distance(x[rng.integers(0, 64, 64)], ref) for _ in range(200)]
            blo, bhi = np.percentile(b, [2.5, 97.5])
            held["bootstrap percentile"] += blo <= centre <= bhi
            held["bootstrap basic"] += 2 * f - bhi <= centre <= 2 * f - blo
            held.setdefault("bootstrap median / figure", []).append(float(np.median(b)) / f)
    ratio = held.pop("bootstrap median / figure", None)
    print(f"  held the fresh median, of {trials} trials: " + ", ".join(
        f"{k} {v}" for k, v in held.items() if boot or k == "jackknife"))
    print(f"  jackknife interval width mean {np.mean(widths):.2f} against the fresh draws' 95 % width {hi_f - lo_f:.2f}")
    if ratio:
        print(f"  bootstrap resamples' median / the draw's own figure: {np.mean(ratio):.2f}")


rng = np.random.default_rng(0)
mix = rng.normal(size=(DIM, DIM)) / np.sqrt(DIM)
shift = np.zeros(DIM)
shift[:10] = 0.8
trial("Gaussian", lambda n: rng.normal(size=(n, DIM)) @ mix,
      lambda n: (rng.normal(size=(n, DIM)) * 1.3) @ mix + shift, trials=20, boot=True)


def heavy(n):
    x = (rng.standard_t(3, size=(n, DIM)) * 1.3) @ mix + shift
    out = rng.random(n) < 0.05  # 5 % outlier cases
    x[out] += 4 * rng.normal(size=(int(out.sum()), DIM))
    return x


trial("heavy-tailed (t3, 5 % outlier cases; reference t4)", lambda n: rng.standard_t(4, size=(n, DIM)) @ mix, heavy,
      trials=40, boot=False)
