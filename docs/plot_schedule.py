"""Draws docs/threshold_ramp.png: the ramped threshold against the step.

    python docs/plot_schedule.py
"""

import os

import numpy as np

from tf_gradual_prune import RampedThresholdSchedule, files


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    begin, ramp, end, frequency = 1000, 4000, 8000, 100
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for ratio, color in ((1.0, "tab:gray"), (1.5, "tab:red"), (2.0, "tab:purple")):
        schedule = RampedThresholdSchedule(begin, ramp, end, frequency, start_slope=1e-3,
                                           ramp_slope_ratio=ratio)
        steps = np.arange(0, 10001, 10)
        ax.step(steps, [schedule.threshold(int(s)) for s in steps], where="post", color=color,
                label=f"φ = {ratio:g}θ")
    for x, name in ((begin, "begin_step"), (ramp, "ramp_step"), (end, "end_step")):
        ax.axvline(x, color="k", ls=":", lw=0.8)
        ax.text(x, ax.get_ylim()[1] * 0.96, f" {name}", va="top", fontsize=8)
    ax.set(xlabel="optimizer step", ylabel="threshold ε",
           title=f"RampedThresholdSchedule: θ = 1e-3, frequency {frequency}")
    ax.legend(loc="center right")
    fig.tight_layout()
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "threshold_ramp.png")
    files.save_figure(fig, path)
    print("saved", path)


if __name__ == "__main__":
    main()
