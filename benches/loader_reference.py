#!/usr/bin/env python3
"""The loader benchmark's work in Python: PIL decode + torchvision-like transforms written
with PIL and numpy (torch is not needed), 2 worker processes producing batches of 32, as a
torch DataLoader(num_workers=2) would.

    python3 benches/loader_reference.py --images target/bench-images [--workers 2]

Prints `PYTHON_IMAGES_PER_SEC train=... eval=...` (best of 3 passes).
"""
import argparse
import math
import random
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZE = 224
RESIZE = 256


def normalise(img):
    x = np.asarray(img, dtype=np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)


def rrc_params(w, h, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    area = w * h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, w - cw), rng.randint(0, h - ch), cw, ch
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        cw, ch = int(round(h * ratio[1])), h
    else:
        cw, ch = w, h
    return (w - cw) // 2, (h - ch) // 2, cw, ch


def train_tf(path, seed):
    rng = random.Random(seed)
    img = Image.open(path).convert("RGB")
    left, top, cw, ch = rrc_params(*img.size, rng)
    img = img.resize((SIZE, SIZE), Image.BILINEAR, box=(left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return normalise(img)


def eval_tf(path, _seed):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    if w <= h:
        nw, nh = RESIZE, int(RESIZE * h / w)
    else:
        nw, nh = int(RESIZE * w / h), RESIZE
    img = img.resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - SIZE) / 2.0)), int(round((nw - SIZE) / 2.0))
    return normalise(img.crop((left, top, left + SIZE, top + SIZE)))


def make_batch(job):
    train, items = job
    tf = train_tf if train else eval_tf
    return np.stack([tf(p, s) for p, s in items]).astype(np.float32)


def run_pass(pool, paths, train, epoch, batch):
    order = list(range(len(paths)))
    if train:
        random.Random(epoch).shuffle(order)
    jobs = [(train, [(str(paths[i]), epoch * 1_000_003 + i) for i in order[k:k + batch]])
            for k in range(0, len(order), batch)]
    n = 0
    for b in pool.imap(make_batch, jobs):
        n += b.shape[0]
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=Path, default=Path("target/bench-images"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    paths = sorted(args.images.glob("*/*.jpg"))
    if not paths:
        raise SystemExit(f"no JPEGs under {args.images}: run `cargo bench --bench loader` first")
    rates = {}
    with Pool(args.workers) as pool:
        for train in (True, False):
            best = 0.0
            for epoch in range(3):
                t = time.perf_counter()
                n = run_pass(pool, paths, train, epoch, args.batch)
                best = max(best, n / (time.perf_counter() - t))
            rates[train] = best
    print(f"PYTHON_IMAGES_PER_SEC train={rates[True]:.1f} eval={rates[False]:.1f}")


if __name__ == "__main__":
    main()
