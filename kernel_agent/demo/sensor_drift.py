# The scripted model's replies for `kernel-agent demo --analysis` (percent format: see kernel_agent/models/scripted.py).
# A markdown cell is the model's message; the code cell after it is the code it sends.

# %% [markdown]
# I'll load every station's readings into one DataFrame in the kernel and check what arrived (types, gaps).

# %%
import pandas as pd

names = [s["name"] for s in tools.sensors.stations()]
frames = {name: tools.sensors.readings(name) for name in names}
data = pd.concat(frames, names=["station"]).reset_index()
print(data.shape)
print(data.dtypes.to_string())
print(data.groupby("station")["temp_c"].agg(["mean", "std", "min", "max"]).round(2))
print("offline days:", data["temp_c"].isna().groupby(data["station"]).sum().to_dict())

# %% [markdown]
# The yearly statistics look alike. A plot of the monthly means per station will show whether any station
# behaves differently over the year.

# %%
import matplotlib.pyplot as plt

monthly = data.set_index("date").groupby("station")["temp_c"].resample("MS").mean().unstack("station")
ax = monthly.plot(figsize=(8, 4), marker="o", title="Monthly mean temperature per station (°C)")
ax.set_xlabel("")
plt.show()

# %% [markdown]
# In the plot, harbour leaves the other stations from August on and ends the year several degrees warmer,
# while the others cool down. I'll measure that against the mean of the other stations.

# %%
others = monthly.drop(columns="harbour").mean(axis=1)
gap = (monthly["harbour"] - others).round(2)
print(gap.to_string())
drift_start = gap[gap > 1].index.min()  # the first month more than 1 °C above the others
print("harbour drifts from", drift_start.date())

# %%
final_answer({
    "station": "harbour",
    "drift_from": str(drift_start.date()),
    "gap_in_december_c": float(gap.iloc[-1]),
    "gap_in_june_c": float(gap.loc["2026-06-01"]),
})
