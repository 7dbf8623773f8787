#!/usr/bin/python3
"""Writes examples/data/sensors-{train,test}.csv: a small, made-up data set
of machine readings (vibration, temperature, current, pressure, noise,
rpm) labelled with the machine's state: idle, running, overloaded, faulty.
Deterministic (seeded); run it again to get the same files.

  examples/data/make_sensors.py [OUT_DIR]
"""
import os
import random
import sys

STATES = {
    # state: means of (vibration mm/s, temperature C, current A,
    #                  pressure bar, noise dB, rpm / 100)
    "idle": (0.4, 31.0, 1.2, 1.0, 42.0, 0.0),
    "running": (2.1, 48.0, 8.5, 3.2, 68.0, 14.5),
    "overloaded": (3.4, 63.0, 13.0, 3.9, 74.0, 12.0),
    "faulty": (6.0, 55.0, 9.5, 2.1, 81.0, 9.0),
}
SPREAD = (1.1, 9.0, 2.8, 0.9, 7.0, 3.5)
COLUMNS = ["vibration", "temperature", "current", "pressure", "noise", "rpm",
           "state"]


def rows(n, rng):
    names = sorted(STATES)
    for _ in range(n):
        state = names[rng.randrange(len(names))]
        means = STATES[state]
        values = [rng.gauss(m, s) for m, s in zip(means, SPREAD)]
        # Readings depend on each other a little: heat follows current.
        values[1] += 0.8 * (values[2] - means[2])
        values[5] = max(values[5], 0.0)
        yield [f"{v:.3f}" for v in values] + [state]


def write(path, n, seed):
    rng = random.Random(seed)
    with open(path, "w") as f:
        f.write(",".join(COLUMNS) + "\n")
        for r in rows(n, rng):
            f.write(",".join(r) + "\n")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(
        os.path.abspath(__file__))
    write(os.path.join(out, "sensors-train.csv"), 2000, 1)
    write(os.path.join(out, "sensors-test.csv"), 500, 2)


if __name__ == "__main__":
    main()
