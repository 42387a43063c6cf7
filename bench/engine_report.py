"""bench/results/engine.json (pytest-benchmark) ⇒ the Markdown table of issue 3's figures.

    python bench/engine_report.py bench/results/engine.json > bench/ENGINE.md
"""

from __future__ import annotations

import json
import platform
import sys


def main(path: str) -> None:
    data = json.load(open(path))
    rows = {}
    for b in data["benchmarks"]:
        per = b["extra_info"].get("decisions_per_round", 1)
        rows[b["name"]] = (b["group"], b["stats"]["median"] / per, b["stats"]["min"] / per, per)
    m = data["machine_info"]
    print("# Engine speed (issues 3 and 11)\n")
    print(f"Machine: {m.get('cpu', {}).get('brand_raw', platform.processor())}, "
          f"{m.get('cpu', {}).get('count', '?')} cores, Python {m['python_version']}; "
          f"run {data['datetime']}.\n")
    print("Command: `pytest bench/test_engine_speed.py --benchmark-only "
          "--benchmark-json=bench/results/engine.json`\n")
    print("| benchmark | group | median per decision | min per decision |")
    print("|---|---|---|---|")
    for name, (group, median, low, per) in rows.items():
        unit = (lambda s: f"{s * 1e6:.2f} µs") if per > 1 else (lambda s: f"{s * 1e3:.0f} ms")
        print(f"| {name} | {group} | {unit(median)} | {unit(low)} |")

    def median(name: str) -> float:
        return rows[name][1]

    print("\nRatios (medians):\n")
    try:
        cedar = median("test_cedarpy_batch_200_rules")
        print(f"- cedarpy is_authorized_batch / pdp decide (compiled): "
              f"{cedar / median('test_decide_200_rules[compiled]'):.0f}×")
        print(f"- cedarpy is_authorized_batch / pdp decide_many (compiled): "
              f"{cedar / median('test_decide_many_200_rules[compiled]'):.0f}×")
    except KeyError:
        pass
    ten = "test_scaling_per_decision[10 rules]"
    for name, label in (("test_decide_shipped_library[compiled]", "shipped library (policies/, traffic mix)"),
                        ("test_decide_300_rules_half_untargeted", "300 rules, half untargeted")):
        if name in rows and ten in rows:
            print(f"- {label} / 10 rules per decision (decide): {median(name) / median(ten):.2f}×")
    try:
        print(f"- 10,000 rules / 10 rules per decision: "
              f"{median('test_scaling_per_decision[10,000 rules in 1,000 policies]') / median('test_scaling_per_decision[10 rules]'):.2f}×")
    except KeyError:
        pass


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/engine.json")
